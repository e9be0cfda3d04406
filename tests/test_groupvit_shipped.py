"""The shipped tiny GroupViT (issue 34): found by name on a fresh install, `clipdense segment` writes its groups
picture beside the overlay, and its card's grouping and segmentation numbers reproduce from the card's world."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

import clipdense as cd
from clipdense.cli.main import main
from clipdense.models.registry import WEIGHTS_DIR, shipped_weights

RECORD = WEIGHTS_DIR / "tiny-groupvit--synthworld.json"


def test_the_shipped_groupvit_is_found_with_its_card() -> None:
    assert ("tiny-groupvit", "synthworld") in shipped_weights()
    assert RECORD.is_file() and RECORD.with_suffix(".md").is_file()


def test_cli_segment_with_the_shipped_groupvit_writes_the_groups_picture(tiny_world: Path, tmp_path: Path) -> None:
    image = sorted((tiny_world / "val" / "images").glob("*.png"))[0]
    out = tmp_path / "seg" / "overlay.png"
    assert main(["segment", str(image), "--model", "tiny-groupvit", "--pretrained", "synthworld", "--classes",
                 "red circle,blue square,sky,grass", "--out", str(out), "--device", "cpu"]) == 0
    groups = out.with_name("overlay_groups.png")
    assert out.is_file() and groups.is_file() and Image.open(groups).width > Image.open(out).width


@pytest.mark.slow
def test_the_cards_grouping_and_segmentation_reproduce(tmp_path: Path) -> None:
    from clipdense.data.world.scenes import SynthConfig
    from clipdense.data.world.writers import write_world
    from clipdense.evaluation import evaluate
    from clipdense.models.groupvit import grouping_stats

    record = json.loads(RECORD.read_text())
    world = tmp_path / "world"
    write_world(SynthConfig(out=str(world), **record["world"]))
    bundle = cd.load_model("tiny-groupvit", pretrained="synthworld", device="cpu")
    result = evaluate(bundle, world, tasks="segmentation", templates=record["templates"], device="cpu")
    seg, card = result["tasks"]["segmentation"]["grouping"]["argmax"], record["segmentation"]["grouping"]["argmax"]
    assert abs(seg["miou"] - card["miou"]) < 0.005
    files = sorted((world / "val" / "images").glob("*.png"))
    images = torch.stack([bundle.preprocess(Image.open(f).convert("RGB")) for f in files])
    with torch.no_grad():
        stats = grouping_stats(bundle.model.visual.float().forward_groups(images))
    assert abs(stats["groups_s2"].item() - record["grouping"]["groups_s2"]) < 0.05
    assert record["grouping"]["groups_s2"] > 1.5      # not collapsed: the scenes hold 3.2 regions on average


@pytest.mark.slow
def test_the_page_offers_the_shipped_groupvit_and_segments_by_its_groups(tiny_world: Path) -> None:
    from clipdense.web.analysis import Analyser, Request
    from clipdense.web.app import model_choices

    assert "tiny-groupvit" in model_choices("tiny-vit-t8") and "tiny-vit-t8" in model_choices("tiny-vit-t8")
    photo = sorted((tiny_world / "val" / "images").glob("*.png"))[0]
    classes = "red circle, blue square, sky, grass"
    result = Analyser(device="cpu")(Request(str(photo), classes, model="tiny-groupvit", pretrained="synthworld",
                                            templates="world"))
    expected = cd.segment(cd.load_model("tiny-groupvit", pretrained="synthworld", device="cpu"), Image.open(photo),
                          [c.strip() for c in classes.split(",")], templates="world")
    assert result.probabilities is not None and "this model segments by itself" in " ".join(result.notes)
    assert torch.equal(result.probabilities.argmax(0), expected)      # the page's labels are cd.segment's
