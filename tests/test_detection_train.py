"""Detector objectives on the engine: F-ViT overfits a handful of world images, novel classes never get gradient,
the transform keeps base boxes only and moves them with the pixels, ViLD distils cached crop embeddings, and the
trained head runs through `clipdense detect`, the proposal export and `clipdense eval`."""
from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

import clipdense as cd
from clipdense.cli.main import main
from clipdense.data.readers import open_data, open_reader
from clipdense.data.sample import Sample
from clipdense.data.world.scenes import SynthConfig
from clipdense.data.world.writers import write_world
from clipdense.evaluation.detection import evaluate_detector
from clipdense.objectives import build_objective
from clipdense.objectives.fvit import Vocabulary, batch_targets, data_vocabulary
from clipdense.train.config import TrainConfig
from clipdense.objectives.base import stack_collate
from clipdense.train.run import run_training

SMALL = {"image_size": 128, "fpn_channels": 32, "head_channels": 32, "fc_channels": 64, "roi_batch": 64,
         "rpn_batch": 64, "rpn_pre_nms_train": 200, "rpn_post_nms_train": 100, "rpn_pre_nms_test": 200,
         "rpn_post_nms_test": 50, "templates": "world", "anchor_sizes": [16, 32, 64, 128, 256]}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("detworld") / "world"
    write_world(SynthConfig(out=str(out), train=4, val=4, image_size=64, max_objects=2, empty_fraction=0.0,
                            classify_train_per_class=0, classify_val_per_class=0))
    return out


@pytest.fixture(scope="module")
def backbone():
    return cd.load_model("tiny-vit-t8", pretrained="synthworld", device="cpu")


@pytest.fixture(scope="module")
def fvit_run(world, tmp_path_factory):
    """F-ViT trained 60 steps on the world's 4 train images, no augmentation (about 10 s on a CPU)."""
    run = tmp_path_factory.mktemp("fvit") / "run"
    config = TrainConfig(objective="fvit", data=str(world), model="tiny-vit-t8", pretrained="synthworld",
                         out=str(run), steps=60, batch_size=4, lr=1e-3, warmup_steps=5, checkpoint_every=60,
                         log_every=20, objective_args={**SMALL, "jitter": [1.0, 1.0], "hflip": False})
    run_training(config)
    return run


@pytest.mark.slow   # fvit_run: 60 training steps
def test_fvit_overfits_a_handful_of_world_images(world, backbone, fvit_run):
    head = cd.load_head(fvit_run, backbone)
    assert head.kind == "detector/fvit"
    info = json.loads((fvit_run / "metrics.jsonl").read_text().splitlines()[-1])
    assert info["loss"] < 1.0
    reader, _ = open_reader(world, {"boxes", "labels"}, "train")
    result, detections = evaluate_detector(head, reader)
    assert result["num_boxes"] >= 4 and detections
    assert result["AP50"]["base"] >= 90.0 and result["AP50"]["all"] == result["AP50"]["base"]
    world_meta = json.loads((world / "world.json").read_text())
    assert head.classes == world_meta["base_things"] and head.config.novel == world_meta["novel_things"]


def test_vocabulary_from_splits():
    classes = ["cat", "dog", "airplane", "sky", "hair drier"]
    isthing = [True, True, True, False, True]
    with pytest.raises(cd.DataError, match="no base class"):      # cat, dog, airplane are all OV-COCO novel
        data_vocabulary(classes, isthing, "ov-coco", [])
    ov = data_vocabulary(["person", "cat", "sky", "hair drier"], [True, True, False, True], "ov-coco", [])
    assert (ov.base, ov.novel) == (["person"], ["cat"])         # 'hair drier' is in neither OV-COCO list
    assert ov.columns.tolist() == [1, 0, 0, 0]                   # only base labels train
    own = data_vocabulary(classes, isthing, "", [], data_novel=["dog"])
    assert (own.base, own.novel, own.columns.tolist()) == (["cat", "airplane", "hair drier"], ["dog"],
                                                           [1, 0, 2, 0, 3])
    with pytest.raises(cd.DataError, match="no base class"):
        data_vocabulary(["dog"], [True], "", ["dog"])


def _objective(backbone, world, name="fvit", **options):
    reader, _, info = open_data(world, {"boxes", "labels"}, "train")
    objective = build_objective(name, backbone, {**SMALL, **options}, info)
    return objective, reader


def test_transform_keeps_base_boxes_and_moves_them(world, backbone):
    objective, reader = _objective(backbone, world, jitter=[1.0, 1.0], hflip=False)
    vocabulary: Vocabulary = objective.vocabulary
    novel_label = reader.classes.index(vocabulary.novel[0])
    base_label = reader.classes.index(vocabulary.base[0])
    sample = Sample(Image.new("RGB", (64, 32)), "x", boxes=torch.tensor([[4.0, 4, 20, 12], [30, 10, 60, 30]]),
                    labels=torch.tensor([base_label, novel_label]))
    out = objective.sample_transform()(sample, torch.Generator().manual_seed(0))
    assert out["image"].shape == (3, 128, 128) and out["size"].tolist() == [64, 128]   # longest side fits 128
    assert out["labels"][:2].tolist() == [1 + vocabulary.names.index(vocabulary.base[0]), -1]   # novel box gone
    assert out["boxes"][0].tolist() == [8.0, 8.0, 40.0, 24.0]


def test_novel_classes_never_get_gradient(world, backbone):
    objective, reader = _objective(backbone, world, jitter=[1.0, 1.0])
    vocabulary = objective.vocabulary
    assert vocabulary.novel and objective.trained.tolist() == [n in vocabulary.base for n in vocabulary.names]
    transform = objective.sample_transform()
    batch = stack_collate([transform(reader[i], torch.Generator().manual_seed(i)) for i in range(len(reader))])
    text = objective.text.clone().requires_grad_(True)
    images, targets = batch_targets(batch)
    step = objective.detector.losses(images, targets, text, objective.trained, 0.2)
    (step.losses["loss_classifier"]).backward()
    novel = ~objective.trained
    assert text.grad[novel].abs().max() == 0
    assert text.grad[objective.trained].abs().sum(1).gt(0).any()


@pytest.mark.slow
def test_vild_distils_cached_crop_embeddings(world, backbone, fvit_run, tmp_path):
    proposals = tmp_path / "proposals.json"
    assert main(["detect", "--proposals", "--head", str(fvit_run), "--data", str(world), "--json", str(proposals),
                 "--top", "5"]) == 0
    exported = json.loads(proposals.read_text())
    assert len(exported["images"]) == 4 and 0 < len(exported["annotations"]) <= 20
    cache = tmp_path / "cache"
    objective, reader = _objective(backbone, world, "vild", proposals=str(proposals), regions=3,
                                   teacher_cache=str(cache), jitter=[1.0, 1.0], hflip=False)
    transform = objective.sample_transform()
    sample = transform(reader[0], torch.Generator().manual_seed(0))
    assert sample["region_valid"].sum() == 3 and sample["crops"].shape[1:3] == (2, 3)   # 1x and 1.5x crops
    batch = stack_collate([sample])
    first = objective(batch)
    assert first["loss_image"] > 0 and len(objective.cache) == 6
    crops = batch["crops"][0, :3]
    expected = torch.nn.functional.normalize(torch.nn.functional.normalize(
        backbone.model.encode_image(crops.flatten(0, 1)), dim=-1).reshape(3, 2, -1).mean(1), dim=-1)
    cached = objective.teacher_targets(crops, batch["region_keys"][0, :3])
    assert torch.allclose(cached, expected, atol=1e-5) and objective.cache.hits == 6
    again = transform(reader[0], torch.Generator().manual_seed(0))
    assert again["crops"].abs().sum() == 0            # every crop is cached now: none is cut again


@pytest.mark.slow
def test_detect_and_eval_commands(world, fvit_run, tmp_path, capsys):
    image = world / "train" / "images" / "000000.png"
    out, results = tmp_path / "boxes.png", tmp_path / "det.json"
    assert main(["detect", str(image), "--head", str(fvit_run), "--out", str(out), "--json", str(results),
                 "--min-score", "0.1"]) == 0
    assert Image.open(out).size == (64, 64)
    entries = json.loads(results.read_text())
    assert entries and {"image_id", "category_id", "bbox", "score", "category_name"} <= set(entries[0])
    found = cd.detect(cd.load_model("tiny-vit-t8", pretrained="synthworld", device="cpu"), str(image),
                      ["red circle", "blue square"], head=fvit_run)
    assert found.boxes.shape[1] == 4 and set(found.names) <= {"red circle", "blue square"}
    capsys.readouterr()
    assert main(["eval", "--model", "tiny-vit-t8", "--pretrained", "synthworld", "--data", str(world), "--split",
                 "train", "--tasks", "detection", "--head", str(fvit_run), "--no-progress"]) == 0
    assert "AP50 novel" in capsys.readouterr().out
    assert main(["eval", "--model", "tiny-vit-t8", "--pretrained", "synthworld", "--data", str(world),
                 "--tasks", "detection", "--no-progress"]) == 2
    assert "--head" in capsys.readouterr().err
    assert main(["detect", str(image), "--head", str(fvit_run), "--model", "tiny-vit-t8"]) == 2   # random init
    assert "trained on 'tiny-vit-t8' pretrained 'synthworld'" in capsys.readouterr().err
    assert main(["info"]) == 0
    assert "detector/fvit, detector/vild" in capsys.readouterr().out


def test_fvit_run_resumes(world, tmp_path):
    run = tmp_path / "run"
    base = dict(objective="fvit", data=str(world), model="tiny-vit-t8", pretrained="synthworld", out=str(run),
                batch_size=2, lr=1e-3, warmup_steps=1, checkpoint_every=2, log_every=1, objective_args=SMALL)
    run_training(TrainConfig(steps=2, **base))
    resumed = run_training(TrainConfig(steps=4, resume=str(run), **base))
    assert resumed.step == 4 and sorted(p.name for p in (run / "checkpoints").iterdir())[-1] == "step-00000004"
    assert (run / "checkpoints" / "step-00000004" / "head.safetensors").is_file()
