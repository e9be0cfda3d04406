"""`clipdense demo video` (issue 28) at tiny sizes: the report holds the retrieval table (its numbers are the ones
logged), a frame strip per shown clip and the captions each retrieves."""
from __future__ import annotations

import dataclasses
import re

import pytest
from PIL import Image

pytest.importorskip("av")


@pytest.mark.slow
def test_video_demo_writes_its_report(tmp_path, monkeypatch):
    from clipdense.demo import video

    world = dataclasses.replace(video.WORLD, train=16, val=8, order_pairs=4, frames=4)
    monkeypatch.setattr(video, "WORLD", world)
    monkeypatch.setattr(video, "STEPS", 3)
    monkeypatch.setattr(video, "SHOWN", 2)
    lines: list[str] = []
    report = video.run_video_demo(tmp_path, lines.append)
    text = report.read_text()
    for i in range(2):
        strip = Image.open(tmp_path / f"clip-{i}.png")
        assert strip.size == (world.frames * 64, 64)   # the clip's frames side by side
        assert f"![clip {i}](clip-{i}.png)" in text
    assert text.count("**") >= 4   # each shown clip's own caption is marked among those it retrieves (or missing)
    row = re.search(r"\| clip4clip seqTransf \| ([0-9.]+) \|", text).group(1)
    assert any(line.endswith(f"val R@1 {row}, order-split R@1 " + line.rsplit(" ", 1)[-1]) and "clip4clip" in line
               for line in lines)
