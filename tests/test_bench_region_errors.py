"""bench/region_errors.py: the colour / shape split of thing errors, by hand and end to end on a small world."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import torch


SPEC = importlib.util.spec_from_file_location("region_errors",
                                              Path(__file__).resolve().parents[1] / "bench" / "region_errors.py")
errors = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(errors)


def test_error_split_by_hand() -> None:
    classes = ["red circle", "red star", "blue circle", "house", "sky"]
    targets = torch.tensor([0, 0, 0, 2, 3])
    preds = torch.tensor([0, 1, 2, 4, 3])   # right; colour kept; shape kept; stuff answered; composite right
    out = errors.error_split(classes, targets, preds)
    assert out["regions"] == 5 and out["top1"] == 40.0
    # over the 4 two-word regions: colour right in 2 (right, red star), shape right in 2 (right, blue circle)
    assert out["colour right"] == 50.0 and out["shape right"] == 50.0
    assert out["colour right, shape wrong"] == 25.0 and out["colour wrong, shape right"] == 25.0
    assert out["confusions"][0].endswith("(1)") and "red circle -> red star (1)" in out["confusions"]


def test_runs_on_a_world(tiny_world, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(sys, "argv", ["region_errors.py", "--data", str(tiny_world), "--model", "tiny-vit-t8",
                                      "--image-size", "64", "--out", str(tmp_path / "e.json")])
    errors.main()
    result = json.loads((tmp_path / "e.json").read_text())["tiny-vit-t8"]
    assert set(result) == {"rois", "crops"} and result["rois"]["regions"] == result["crops"]["regions"] > 0
    assert "| tiny-vit-t8 | rois |" in capsys.readouterr().out


def test_pil_crops_bench_cuts_the_same_regions() -> None:
    """bench/clipself_pil_crops.py: PIL crops of the teacher's boxes agree with the RoIAlign path up to resampling."""
    from PIL import Image as PILImage

    from clipdense.data.sample import Sample
    from clipdense.objectives.clipself import ClipSelfOptions
    from clipdense.objectives.clipself_regions import ClipSelfTransform

    spec = importlib.util.spec_from_file_location(
        "clipself_pil_crops", Path(__file__).resolve().parents[1] / "bench" / "clipself_pil_crops.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    pixels = torch.zeros(32, 32, 3, dtype=torch.uint8)
    pixels[8:24, 8:24] = torch.tensor([255, 0, 0], dtype=torch.uint8)
    sample = Sample(PILImage.fromarray(pixels.numpy()), "k", boxes=torch.tensor([[8.0, 8.0, 24.0, 24.0]]))
    options = ClipSelfOptions(regions="boxes", keep_aspect=False, box_expand=1.0, max_regions=2)
    transform = ClipSelfTransform(options, 64, 32, [0.5] * 3, [0.5] * 3, with_global=False)
    roi = transform(sample, torch.Generator().manual_seed(0))["crops"]
    ClipSelfTransform._crops, saved = bench.pil_crops, ClipSelfTransform._crops
    try:
        pil = transform(sample, torch.Generator().manual_seed(0))["crops"]
    finally:
        ClipSelfTransform._crops = saved
    assert pil.shape == roi.shape and (pil[1] == 0).all()          # padding slot untouched
    assert torch.allclose(pil[0, :, 4:-4, 4:-4], roi[0, :, 4:-4, 4:-4], atol=0.05)   # the red square, all over
