"""GroupViT through the user's paths: segment() by its grouping, the groups picture, `clipdense train --objective
groupvit` -> `clipdense eval` (zero-shot, retrieval, segmentation, regions by its segments) -> `clipdense segment`."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

import clipdense as cd
from clipdense.cli.main import main
from clipdense.errors import ConfigError
from clipdense.evaluation import evaluate
from clipdense.tasks import BACKGROUND
from clipdense.tasks.groups import groups_picture


@pytest.fixture
def world(tiny_world: Path) -> Path:
    """The run's shared tiny world (conftest's TINY_WORLD: 8 train and 6 val scenes)."""
    return tiny_world


@pytest.fixture(scope="module")
def groupvit() -> cd.Bundle:
    return cd.load_model("tiny-groupvit", device="cpu", init_seed=2)


def test_segment_labels_by_groups_and_threshold(groupvit: cd.Bundle, world: Path) -> None:
    image = Image.open(next((world / "val" / "images").glob("*.png"))).convert("RGB").resize((80, 64))
    classes = ["red circle", "blue square", "sky", "grass"]
    labels = cd.segment(groupvit, image, classes, mode="sclip")     # the mode does not apply to GroupViT
    assert labels.shape == (64, 80) and labels.min() >= 0 and labels.max() < len(classes)
    assert torch.equal(labels, cd.segment(groupvit, image, classes))
    everything_background = cd.segment(groupvit, image, classes, background_threshold=1.0)
    assert (everything_background == BACKGROUND).all()   # a group's score is a product of probabilities, < 1


def test_groups_picture_has_a_panel_per_stage(groupvit: cd.Bundle, world: Path, tiny_bundle) -> None:
    image = next((world / "val" / "images").glob("*.png"))
    picture = groups_picture(groupvit, image)
    assert picture.width > 3 * picture.height - 50   # the image and two stages side by side
    with pytest.raises(ConfigError, match="makes its own segments"):
        groups_picture(tiny_bundle, image)


def test_evaluate_runs_every_dense_task_by_the_grouping(groupvit: cd.Bundle, world: Path) -> None:
    res = evaluate(groupvit, world, dense_mode="maskclip,naclip", device="cpu", batch_size=4)
    assert res["dense_modes"] == ["grouping"]
    tasks = res["tasks"]
    assert 0 <= tasks["zeroshot"]["top1"] <= 1 and tasks["retrieval"]["num_images"] == 6
    seg = tasks["segmentation"]["grouping"]
    assert seg["argmax"]["num_pixels"] > 0 and 0 <= seg["argmax"]["miou_things"] <= 1
    assert seg["background"]["threshold"] == 0.1 and "segment" in seg["background"]["score"]
    assert set(tasks["regions"]["dense"]) == {"grouping"}


@pytest.mark.slow
def test_cli_train_eval_segment(world: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    assert main(["train", "--objective", "groupvit", "--model", "tiny-groupvit", "--data", str(world), "--out",
                 str(run), "--steps", "2", "--batch-size", "4", "--device", "cpu",
                 "--objective-arg", "multi_label=2"]) == 0
    out = tmp_path / "eval.json"
    assert main(["eval", "--model", str(run), "--data", str(world), "--tasks", "zeroshot,retrieval,segmentation",
                 "--device", "cpu", "--no-progress", "--out", str(out)]) == 0
    assert set(json.loads(out.read_text())["tasks"]["segmentation"]) == {"grouping"}
    overlay = tmp_path / "seg" / "overlay.png"
    image = next((world / "val" / "images").glob("*.png"))
    assert main(["segment", str(image), "--model", str(run), "--classes", "red circle,sky", "--out",
                 str(overlay)]) == 0
    assert overlay.is_file() and (tmp_path / "seg" / "overlay_groups.png").is_file()
    assert "the groups of each stage" in capsys.readouterr().out
