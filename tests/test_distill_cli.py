"""`clipdense distill`: end to end on a tiny world, exact resume, and its errors."""
from __future__ import annotations

import argparse
import json

import pytest
import torch

import clipdense as cd
from clipdense.cli.distill import resolve_distill_config
from clipdense.cli.main import build_parser, main
from clipdense.models.weights import read_state_dict
from clipdense.train.run import run_training


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """24 training scenes with classification images: enough for the slow runs' batches and their eval."""
    out = tmp_path_factory.mktemp("world")
    assert main(["data", "synth", "--out", str(out), "--train", "24", "--val", "8", "--image-size", "64",
                 "--classify-train-per-class", "1", "--classify-val-per-class", "1"]) == 0
    return out


def _args(world, out, *extra) -> argparse.Namespace:
    return build_parser().parse_args(["distill", "--data", str(world), "--model", "tiny-vit-t8", "--out", str(out),
                                      "--steps", "6", "--batch-size", "4", "--checkpoint-every", "3",
                                      "--device", "cpu", "--student-size", "64", "--max-regions", "4", *extra])


class _Stop(Exception):
    pass


def _stop_after(step_to_stop: int):
    def hook(step, trainer):
        if step == step_to_stop:
            raise _Stop()
    return hook


@pytest.mark.slow
@pytest.mark.parametrize("regions", ["grid", "boxes"])
def test_distill_resumes_bit_exactly(world, tmp_path, regions):
    full = resolve_distill_config(_args(world, tmp_path / "full", "--regions", regions, "--global-guard", "0.5"))
    run_training(full)
    broken = resolve_distill_config(_args(world, tmp_path / "cut", "--regions", regions, "--global-guard", "0.5"))
    with pytest.raises(_Stop):
        run_training(broken, hooks=[_stop_after(3)])
    assert main(["distill", "--resume", str(tmp_path / "cut"), "--device", "cpu"]) == 0
    a = read_state_dict(tmp_path / "full" / "checkpoints" / "step-00000006" / "model.safetensors")
    b = read_state_dict(tmp_path / "cut" / "checkpoints" / "step-00000006" / "model.safetensors")
    start = cd.load_model("tiny-vit-t8", device="cpu")  # seeded identically inside run_training
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], v) for k, v in start.model.state_dict().items() if k.startswith("visual."))


@pytest.mark.slow
def test_distill_cli_with_cache_ensemble_then_eval(world, tmp_path, capsys):
    out, cache = tmp_path / "run", tmp_path / "cache"
    assert main(["distill", "--data", str(world), "--model", "tiny-vit-t8", "--out", str(out), "--steps", "4",
                 "--batch-size", "4", "--device", "cpu", "--student-size", "64", "--max-regions", "4",
                 "--teacher-cache", str(cache), "--ensemble", "0.7"]) == 0
    assert len(list(cache.glob("teacher-*.pt"))) == 1
    assert (out / "ensemble.safetensors").is_file()
    assert cd.load_model(out / "ensemble.safetensors", device="cpu").name == "tiny-vit-t8"
    assert "clipself" in (out / "config.yaml").read_text()
    # the student's size travels with the weights, and evaluation reads the dense map at it
    assert cd.load_model(str(out), device="cpu").dense_size == 64
    assert cd.load_model(out / "ensemble.safetensors", device="cpu").dense_size == 64
    assert cd.load_model("tiny-vit-t8", device="cpu").dense_size is None
    assert main(["eval", "--model", str(out), "--data", str(world), "--tasks", "regions", "--device", "cpu",
                 "--out", str(tmp_path / "r.json")]) == 0
    assert "rois" in capsys.readouterr().out
    assert json.loads((tmp_path / "r.json").read_text())["image_size"] == 64


def test_distill_errors(tiny_world, tmp_path, capsys):
    world = tiny_world
    assert main(["distill", "--data", str(tmp_path / "nowhere"), "--model", "tiny-vit-t8", "--out",
                 str(tmp_path / "r"), "--steps", "2", "--device", "cpu"]) == 2
    assert main(["distill", "--data", str(world), "--model", "tiny-vit-t8", "--out", str(tmp_path / "r2"),
                 "--steps", "2", "--batch-size", "4", "--device", "cpu", "--dense-mode", "fancy"]) == 2
    assert main(["distill", "--data", str(world / "train" / "images"), "--regions", "boxes", "--model",
                 "tiny-vit-t8", "--out", str(tmp_path / "r3"), "--steps", "2", "--device", "cpu"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 3 and "dense_mode" in errors[1] and "coco:" in errors[2]


@pytest.mark.slow
def test_train_objective_clipself_on_boxes_from_a_world_and_a_coco_folder(world, tmp_path):
    common = ["--objective", "clipself", "--model", "tiny-vit-t8", "--steps", "2", "--batch-size", "4",
              "--device", "cpu", "--objective-arg", "regions=boxes", "--objective-arg", "student_size=64",
              "--objective-arg", "max_regions=4"]
    assert main(["train", "--data", str(world), "--out", str(tmp_path / "w"), *common]) == 0
    coco = f"coco:images={world}/train/images,annotations={world}/annotations/instances_train.json"
    assert main(["train", "--data", coco, "--out", str(tmp_path / "c"), *common]) == 0
    assert "regions: boxes" in (tmp_path / "c" / "config.yaml").read_text()
    assert cd.load_model(str(tmp_path / "c"), device="cpu").name == "tiny-vit-t8"


def test_data_that_lacks_a_field_is_refused_in_one_line(tiny_world, tmp_path, capsys):
    world = tiny_world
    csv = world / "train.csv"
    assert main(["train", "--objective", "clipself", "--data", str(csv), "--model", "tiny-vit-t8", "--out",
                 str(tmp_path / "r"), "--steps", "1", "--device", "cpu", "--objective-arg", "regions=boxes"]) == 2
    semseg = (f"semseg:images={world}/train/images,labels={world}/semseg/train,"
              f"classes={world}/semseg/classes.txt")
    assert main(["train", "--objective", "clip", "--data", semseg, "--model", "tiny-vit-t8", "--out",
                 str(tmp_path / "s"), "--steps", "1", "--device", "cpu"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert errors[0].endswith(f"clipself with regions=boxes needs boxes; --data {csv} has caption")
    assert errors[1].endswith(f"clip needs caption; --data {semseg} has semantic")
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_distill_defaults_are_the_same_with_and_without_a_config(tiny_world, tmp_path):
    world = tiny_world
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("seed: 3\n")
    plain = resolve_distill_config(build_parser().parse_args(["distill", "--data", str(world)]))
    configured = resolve_distill_config(build_parser().parse_args(["distill", "--data", str(world),
                                                                   "--config", str(yaml_file)]))
    assert (plain.lr, plain.warmup_steps, plain.checkpoint_every) == (1e-4, 20, 100)
    assert (configured.lr, configured.warmup_steps, configured.checkpoint_every, configured.seed) == (1e-4, 20, 100, 3)
    flagged = resolve_distill_config(build_parser().parse_args(["distill", "--data", str(world), "--regions", "boxes",
                                                                "--student-sizes", "64", "96", "--fixed-regions"]))
    assert flagged.objective_args == {"regions": "boxes", "student_sizes": [64, 96], "fixed_regions": True}
    squashed = resolve_distill_config(build_parser().parse_args(["distill", "--data", str(world), "--no-keep-aspect",
                                                                 "--train", "tower"]))
    assert squashed.objective_args == {"keep_aspect": False, "train": "tower"}


@pytest.mark.parametrize("name", ["b16-coco-patches", "b16-coco-proposals", "l14-coco-patches", "l14-coco-proposals"])
def test_published_recipe_configs_are_valid(name):
    """The published recipe is one config away: every key known, CLIPSelf options valid, the paper's values."""
    from clipdense.config import build_config
    from clipdense.objectives.clipself import ClipSelfOptions, _validate
    from clipdense.train.config import TrainConfig

    config = build_config(TrainConfig, f"configs/clipself-eva02-{name}.yaml")
    options = build_config(ClipSelfOptions, None, config.objective_args)
    _validate(options)
    assert (config.lr, config.weight_decay, config.warmup_steps, config.grad_clip) == (1e-5, 0.1, 1000, 0.0)
    assert (config.beta1, config.beta2, config.eps, config.batch_size) == (0.9, 0.98, 1e-6, 16)
    assert options.train == "blocks" and options.keep_aspect and options.student_size in (1024, 896)
    assert options.regions == ("grid" if "patches" in name else "boxes")


def test_the_demo_ablation_base_config_is_the_published_recipe():
    """configs/clipself-demo-published.yaml (issue 19's ablation base): valid, blocks only, unit-norm pooling."""
    from clipdense.config import build_config
    from clipdense.objectives.clipself import ClipSelfOptions, _validate
    from clipdense.train.config import TrainConfig

    config = build_config(TrainConfig, "configs/clipself-demo-published.yaml")
    options = build_config(ClipSelfOptions, None, config.objective_args)
    _validate(options)
    assert options.train == "blocks" and options.normalize_patches and options.regions == "boxes"
    assert (config.steps, config.batch_size, config.lr) == (300, 16, 1e-4)
