"""Training Cat-Seg and LSeg heads on the one engine: only the named CLIP tensors move (at 0.01x the lr), heads
overfit a few images, a saved head reloads to identical predictions on the original backbone and is refused on
any other, and the CLI trains, segments with and refuses heads."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import clipdense as cd
from clipdense.cli.main import main
from clipdense.data.world.folder import open_world
from clipdense.errors import ConfigError, DataError, ModelLoadError
from clipdense.evaluation import evaluate, to_markdown
from clipdense.heads import read_head_info
from clipdense.heads.segmentation import tuned_tensors
from clipdense.heads.segmentation.tuning import TunedCLIP
from clipdense.models import dense_forward
from clipdense.models.weights import model_fingerprint
from clipdense.data.readers import DataInfo
from clipdense.objectives import build_objective
from clipdense.objectives.seghead import IGNORE, SegTrainingOptions, training_vocabulary
from clipdense.train.config import TrainConfig
from clipdense.data.streams import InMemorySamples
from clipdense.train.run import run_training

sys.path.insert(0, str(Path(__file__).parent))
from dense_towers import tiny_timm_clip  # noqa: E402
from segheads_toy import CLASSES, TINY_CATSEG, TINY_LSEG, miou, options, toy_samples  # noqa: E402

HEADS = {"catseg": TINY_CATSEG, "lseg": TINY_LSEG}


def test_tuned_tensors_are_the_query_value_projections_and_positions(tiny_bundle) -> None:
    names = {t.name for t in tuned_tensors(tiny_bundle.model, image=True, text=True, positions=True)}
    blocks = [f"visual.transformer.resblocks.{i}.attn" for i in range(3)] + \
        [f"transformer.resblocks.{i}.attn" for i in range(2)]
    assert names == {f"{b}.{p}" for b in blocks for p in ("in_proj_weight", "in_proj_bias")} | \
        {"visual.positional_embedding"}
    rows = {t.rows for t in tuned_tensors(tiny_bundle.model, True, False, False)}
    assert rows == {(0, 64), (128, 192)}                                 # q and v rows of the packed q-k-v
    image_only = tuned_tensors(tiny_bundle.model, image=True, text=False, positions=False)
    assert all(t.name.startswith("visual.") for t in image_only)


@pytest.mark.parametrize("kind", ["eva02", "siglip"])
def test_timm_towers_tune_their_query_value_tensors(kind: str) -> None:
    bundle = tiny_timm_clip(kind)
    tuned = tuned_tensors(bundle.model, image=True, text=False, positions=True)
    names = {t.name.split("blocks.0.")[-1] for t in tuned if "blocks.0." in t.name}
    expected = {"eva02": {"attn.q_proj.weight", "attn.q_proj.bias", "attn.v_proj.weight", "attn.v_proj.bias"},
                "siglip": {"attn.qkv.weight", "attn.qkv.bias"}}[kind]
    assert names == expected and "visual.trunk.pos_embed" in {t.name for t in tuned}
    wrapper = TunedCLIP(bundle.model, tuned, 0.01)
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():                                   # zero deltas: exactly the backbone's own dense map
        same = wrapper.call(lambda clip, x: dense_forward(clip, x, "maskclip").dense, images)
        assert torch.equal(same, dense_forward(bundle.model, images, "maskclip").dense)


def _prepared(kind: str, bundle, **extra):
    torch.manual_seed(0)
    return build_objective(kind, bundle, options(HEADS[kind], **extra), DataInfo(classes=tuple(CLASSES)))


def test_only_the_named_clip_tensors_train_at_a_hundredth_of_the_lr(bundle) -> None:
    objective = _prepared("catseg", bundle)
    before = {k: v.clone() for k, v in bundle.model.state_dict().items()}
    trainable = dict(objective.named_trainable_parameters())
    assert not any(name.startswith("model.") for name in trainable)
    assert all(not p.requires_grad for p in bundle.model.parameters())
    tuned = {n for n in trainable if n.startswith("head.tuned.")}
    assert len(tuned) == len(objective.head.tuned.tensors)
    transform = objective.sample_transform()
    batch = objective.collate([transform(s, torch.Generator().manual_seed(i)) for i, s in enumerate(toy_samples(2))])
    optimizer = torch.optim.Adam(trainable.values(), lr=1e-2)
    objective(batch)["loss"].backward()
    optimizer.step()
    after = bundle.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)                 # the backbone never changes
    overrides = objective.head.tuned.overrides()
    moved = {name[len("clip."):]: (tensor.detach() - before[name[len("clip."):]]).abs()
             for name, tensor in overrides.items()}
    assert set(moved) == set(objective.head.tuned.tuned_names())
    step = max(float(m.max()) for m in moved.values())
    assert step == pytest.approx(0.01 * 1e-2, rel=0.05)    # Adam's first step: lr x scale per element at most
    k_rows = moved["visual.transformer.resblocks.0.attn.in_proj_weight"][64:128]
    assert float(k_rows.max()) == 0.0                                            # keys stay frozen


@pytest.mark.slow   # 60 to 100 steps
@pytest.mark.parametrize("kind,steps,lr", [("catseg", 100, 1e-3), ("lseg", 60, 1e-3)])
def test_a_head_overfits_a_few_images(bundle, kind: str, steps: int, lr: float) -> None:
    objective = _prepared(kind, bundle)
    transform = objective.sample_transform()
    batch = objective.collate([transform(s, torch.Generator().manual_seed(0)) for s in toy_samples(4)])
    optimizer = torch.optim.AdamW([p for _, p in objective.named_trainable_parameters()], lr=lr, weight_decay=0)
    for step in range(steps):
        optimizer.zero_grad()
        objective(batch)["loss"].backward()
        optimizer.step()
        objective.after_step(step + 1)
    objective.eval()
    scores = objective.head.segment_logits(batch["image"], CLASSES)
    assert miou(scores.argmax(1), batch["label"], len(CLASSES)) >= 0.9


def test_training_vocabulary_holds_out_unseen_classes() -> None:
    seen, lookup = training_vocabulary(["a", "b", "c", "d"], SegTrainingOptions(exclude=["c"]), held_out=["b"])
    assert seen == ["a", "d"] and lookup.tolist() == [0, IGNORE, IGNORE, 1]
    seen, lookup = training_vocabulary(None, SegTrainingOptions(classes=["x", "y"]))
    assert seen == ["x", "y"] and lookup.tolist() == [0, 1]
    with pytest.raises(ConfigError, match="'e'"):
        training_vocabulary(["a", "b"], SegTrainingOptions(exclude=["e"]))
    with pytest.raises(DataError, match="names its classes"):
        training_vocabulary(None, SegTrainingOptions())


def test_classes_per_step_keeps_every_present_class(bundle) -> None:
    objective = _prepared("lseg", bundle, classes_per_step=2)
    objective.head.classes = ["a", "b", "c", "d", "e"]
    labels = torch.tensor([[[3, 3], [IGNORE, 1]]])
    names, remapped = objective.step_classes(labels)
    assert len(names) == 2 and {"b", "d"} == set(names)
    assert [names[i] for i in remapped[remapped >= 0].tolist()] == ["d", "d", "b"]


def test_transform_moves_the_label_map_and_pads_with_ignore(bundle) -> None:
    objective = _prepared("lseg", bundle, jitter=[0.5, 0.5], hflip=True)
    sample = toy_samples(1)[0]
    out = objective.sample_transform()(sample, torch.Generator().manual_seed(3))
    assert out["image"].shape == (3, 64, 64) and out["label"].shape == (64, 64)
    assert (out["label"][32:, :] == IGNORE).all() and (out["label"][:, 32:] == IGNORE).all()
    assert set(out["label"][:32, :32].unique().tolist()) <= {0, 1, 2}


@pytest.mark.parametrize("kind", ["catseg", "lseg"])
def test_engine_run_saves_a_head_that_reloads_exactly_and_refuses_other_weights(bundle, tmp_path: Path,
                                                                                kind: str) -> None:
    original = model_fingerprint(bundle.model)
    config = TrainConfig(objective=kind, model="tiny-vit-t8", out=str(tmp_path / "run"), steps=3, batch_size=2,
                         lr=1e-2, warmup_steps=0, device="cpu", log_every=1, checkpoint_every=3,
                         objective_args=options(HEADS[kind]))
    trained = {}

    def keep(step: int, trainer) -> None:
        trained["head"] = trainer.objective.head

    run_training(config, source=InMemorySamples(toy_samples(4)), hooks=[keep], info=DataInfo(classes=tuple(CLASSES)))
    info = read_head_info(tmp_path / "run")
    assert info.kind == f"segmenter/{kind}" and info.classes == CLASSES
    assert info.backbone.fingerprint == original == model_fingerprint(bundle.model)
    fresh = cd.load_model("tiny-vit-t8", device="cpu")                    # the same (seeded) weights
    head = cd.load_head(tmp_path / "run", fresh)
    images = torch.randn(2, 3, 64, 64)
    trained["head"].eval()
    with torch.no_grad():
        assert torch.equal(head(images, head.text_features(["sky", "red circle"])),
                           trained["head"](images, trained["head"].text_features(["sky", "red circle"])))
    assert any(float(p.detach().abs().max()) > 0 for p in head.tuned.deltas.values())     # the tuned tensors came back
    other = cd.load_model("tiny-vit-t8", device="cpu", init_seed=1)
    with pytest.raises(ModelLoadError, match="other weights of the same model"):
        cd.load_head(tmp_path / "run", other)


def test_segment_with_a_head_any_classes_and_sliding_windows(bundle, tmp_path: Path) -> None:
    objective = _prepared("lseg", bundle)
    path = cd.save_head(objective.head, tmp_path / "lseg.safetensors", bundle)
    image = toy_samples(1, size=96)[0].image
    labels = cd.segment(bundle, image, ["blue circle", "green grass"], head=path)
    assert labels.shape == (96, 96) and set(labels.unique().tolist()) <= {0, 1}
    windowed = cd.segment(bundle, image, ["blue circle", "green grass"], head=path, window=48)
    assert windowed.shape == (96, 96)
    with pytest.raises(ConfigError, match="cannot segment"):
        cd.segment(bundle, image, ["sky"], head=torch.nn.Linear(2, 2))


@pytest.mark.slow
def test_cli_trains_a_head_on_a_world_and_segments_with_it(tiny_world: Path, tmp_path: Path, capsys) -> None:
    world, run = tiny_world, tmp_path / "run"
    args = [f"--objective-arg={k}={v}" for k, v in TINY_CATSEG.items() if not isinstance(v, list)]
    assert main(["train", "--objective", "catseg", "--model", "tiny-vit-t8", "--data", str(world), "--out", str(run),
                 "--steps", "2", "--batch-size", "2", "--device", "cpu", *args]) == 0
    info = read_head_info(run)
    novel = set(open_world(world).novel_things)
    assert novel and info.classes and not novel & set(info.classes)     # the world's novel things are unseen
    image = next((world / "val" / "images").iterdir())
    out = tmp_path / "overlay.png"
    assert main(["segment", str(image), "--classes", "red circle,sky,grass", "--head", str(run),
                 "--model", "tiny-vit-t8", "--device", "cpu", "--out", str(out)]) == 0
    assert out.is_file()
    capsys.readouterr()
    assert main(["segment", str(image), "--classes", "sky", "--head", str(run), "--model", "tiny-vit-s8",
                 "--device", "cpu", "--out", str(out)]) == 2
    assert "another model" in capsys.readouterr().err


def test_eval_segmentation_with_a_head_reports_it_beside_the_modes_with_seen_and_unseen(bundle,
                                                                                        tmp_path: Path) -> None:
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    for sample in toy_samples(3):
        sample.image.save(images / f"{sample.key}.png")
        Image.fromarray(sample.semantic.numpy().astype(np.uint8)).save(labels / f"{sample.key}.png")
    (tmp_path / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    objective = _prepared("lseg", bundle, exclude=["blue circle"])
    path = cd.save_head(objective.head, tmp_path / "lseg.safetensors", bundle)
    data = f"semseg:images={images},labels={labels},classes={tmp_path / 'classes.txt'}"
    result = evaluate(bundle, data, tasks="segmentation", dense_mode="maskclip", head=path, device="cpu")
    seg = result["tasks"]["segmentation"]
    assert set(seg) == {"maskclip", "head segmenter/lseg"}
    for entry in seg.values():
        iou = entry["argmax"]["iou_per_class"]
        assert entry["argmax"]["miou_unseen"] == pytest.approx(iou[1], nan_ok=True)        # blue circle
        assert entry["argmax"]["miou_seen"] == pytest.approx(np.nanmean([iou[0], iou[2]]), nan_ok=True)
    assert "seen mIoU" in to_markdown(result)


@pytest.mark.parametrize("objective", ["catseg", "lseg"])
def test_a_bad_head_option_is_one_line(tmp_path, capsys, objective: str) -> None:
    """A negative image_size once reached PIL's crop as a traceback."""
    world = tmp_path / "world"
    assert main(["data", "synth", "--out", str(world), "--train", "2", "--val", "1", "--image-size", "64",
                 "--classify-train-per-class", "0", "--classify-val-per-class", "0"]) == 0
    capsys.readouterr()
    code = main(["train", "--objective", objective, "--model", "tiny-vit-t8", "--data", str(world), "--out",
                 str(tmp_path / "run"), "--steps", "1", "--batch-size", "1", "--device", "cpu",
                 "--objective-arg", "image_size=-3"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "image_size must be > 0" in err
