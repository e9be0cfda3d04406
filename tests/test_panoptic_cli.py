"""`clipdense train --objective mask2former`, `segment --panoptic` (overlay, COCO panoptic PNG + JSON),
`cd.segment_panoptic`, `cd.segment(head=...)` and `eval --tasks panoptic` on a tiny world; bad flags are one line."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import clipdense as cd
from clipdense.cli.main import main
from clipdense.data.formats.coco import panoptic_ids
from clipdense.errors import ConfigError
from clipdense.heads.segmentation import PanopticResult
from clipdense.tasks.panoptic import panoptic_json, panoptic_png, segment_panoptic
from clipdense.train.config import TrainConfig
from clipdense.train.run import run_training

ARCH = {"hidden_dim": 32, "mask_dim": 32, "queries": 8, "decoder_layers": 3, "heads": 4, "ffn_dim": 64,
        "points": 256, "templates": "world"}


@pytest.fixture(scope="module")
def run(tiny_world, tmp_path_factory):
    out = tmp_path_factory.mktemp("maskgen") / "run"
    run_training(TrainConfig(objective="mask2former", data=str(tiny_world), model="tiny-vit-t8",
                             pretrained="synthworld", out=str(out), steps=2, batch_size=2, warmup_steps=1,
                             checkpoint_every=2, log_every=1, device="cpu", objective_args=ARCH))
    return out


@pytest.mark.slow    # a training run + three commands
def test_train_segment_and_eval_commands(tiny_world, run, tmp_path, capsys) -> None:
    image = tiny_world / "val" / "images" / "000000.png"
    classes = "red circle,blue square,sky,grass"
    out = tmp_path / "pan.png"
    assert main(["segment", str(image), "--head", str(run), "--panoptic", "--classes", classes, "--stuff",
                 "sky,grass", "--model", "tiny-vit-t8", "--pretrained", "synthworld", "--out", str(out)]) == 0
    doc = json.loads((tmp_path / "pan_panoptic.json").read_text())
    ids = panoptic_ids(tmp_path / "pan_panoptic.png")
    assert ids.shape == (64, 64) and Image.open(out).width == 160     # the overlay with its legend strip
    assert sorted(np.unique(ids[ids > 0]).tolist()) == sorted(s["id"] for s in doc["annotations"][0]["segments_info"])
    capsys.readouterr()
    assert main(["eval", "--model", "tiny-vit-t8", "--pretrained", "synthworld", "--data", str(tiny_world),
                 "--tasks", "panoptic", "--head", str(run), "--no-progress"]) == 0
    assert "PQ things" in capsys.readouterr().out
    bundle = cd.load_model("tiny-vit-t8", pretrained="synthworld", device="cpu")
    labels = cd.segment(bundle, str(image), classes.split(","), head=run)      # the same queries, semantic
    assert labels.shape == (64, 64) and labels.dtype == torch.int64


def test_panoptic_png_and_json_follow_the_coco_format() -> None:
    ids = torch.zeros(4, 6, dtype=torch.long)
    ids[:2, :3], ids[2:, :] = 1, 300                                # 300 = 44 + 256: two colour channels
    from clipdense.heads.segmentation import Segment
    result = PanopticResult(ids, [Segment(1, 0, True, 0.9, 6), Segment(300, 1, False, 0.8, 12)], ["dog", "sky"])
    rgb = np.asarray(panoptic_png(result)).astype(np.int64)
    assert (rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]).tolist() == ids.tolist()
    doc = panoptic_json(result, "x.png")
    info = doc["annotations"][0]["segments_info"]
    assert [(s["id"], s["category_id"], s["bbox"], s["area"]) for s in info] == [(1, 1, [0, 0, 3, 2], 6),
                                                                                (300, 2, [0, 2, 6, 2], 12)]
    assert [c["isthing"] for c in doc["categories"]] == [1, 0]


def test_bad_panoptic_flags_are_one_line(tmp_path, capsys) -> None:
    image = tmp_path / "a.png"
    Image.new("RGB", (16, 16)).save(image)
    for extra in (["--panoptic"], ["--stuff", "sky"]):
        assert main(["segment", str(image), "--classes", "a,sky", "--out", str(tmp_path / "o.png"), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "--panoptic" in err
    with pytest.raises(ConfigError, match="stuff"):
        segment_panoptic(None, image, ["a"], head=torch.nn.Linear(1, 1), stuff=["b"])
