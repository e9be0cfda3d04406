"""`clipdense demo grounding` (issue 26) at tiny sizes: the report holds the recall table, a picture per shown
sentence and the detector picture, and its numbers are the evaluation's."""
from __future__ import annotations

import re

import pytest


@pytest.mark.slow
def test_grounding_demo_writes_its_report(tmp_path, monkeypatch):
    from clipdense.demo import grounding

    monkeypatch.setattr(grounding, "WORLD", {**grounding.WORLD, "train": 24, "val": 8})
    monkeypatch.setattr(grounding, "STEPS", 6)
    monkeypatch.setattr(grounding, "SHOWN", 2)
    lines: list[str] = []
    report = grounding.run_grounding_demo(tmp_path, lines.append)
    text = report.read_text()
    assert "| any |" in text and "| merged |" in text
    for name in re.findall(r"\(figures/([^)]+)\)", text):
        assert (tmp_path / "figures" / name).is_file()
    assert (tmp_path / "figures" / "detect.png").is_file() and (tmp_path / "figures" / "ground-1.png").is_file()
    recall = re.search(r"\| any \| ([0-9.]+) \|", text).group(1)
    assert any(f"R@1 {recall} (any box)" in line for line in lines)
