"""`clipdense demo panoptic` (issue 27) at tiny sizes: the report holds the three score rows, every picture it
links exists, and its numbers are the evaluation's (the ensemble row equals evaluate_panoptic on the demo's run)."""
from __future__ import annotations

import re

import pytest


@pytest.mark.slow
def test_panoptic_demo_writes_its_report(tmp_path, monkeypatch):
    from clipdense.data.readers import open_data
    from clipdense.demo import panoptic
    from clipdense.evaluation.panoptic import PanopticOptions, evaluate_panoptic
    from clipdense.heads import load_head
    from clipdense.models import load_model

    monkeypatch.setattr(panoptic, "WORLD", {**panoptic.WORLD, "train": 16, "val": 3})
    monkeypatch.setattr(panoptic, "STEPS", 4)
    lines: list[str] = []
    report = panoptic.run_panoptic_demo(tmp_path, lines.append)
    text = report.read_text()
    for name in ("head alone", "CLIP alone", "ensemble"):
        assert f"| {name} |" in text
    pictures = re.findall(r"!\[\]\(([^)]+)\)", text)
    assert len(pictures) == 9      # three val scenes: image, truth, prediction
    for name in pictures:
        assert (tmp_path / name).is_file()
    bundle = load_model("tiny-vit-t8", pretrained="synthworld", device="cpu")
    reader, _, _ = open_data(str(tmp_path / "world"), {"boxes", "labels", "masks"}, "val")
    expected = evaluate_panoptic(load_head(tmp_path / "run", bundle), reader, PanopticOptions(alpha=0.4, beta=0.8))
    row = re.search(r"\| ensemble \| ([0-9.na]+) \|", text).group(1)
    assert row == f"{expected['pq']:.1f}"
    assert any(line.startswith("ensemble: PQ") for line in lines)
