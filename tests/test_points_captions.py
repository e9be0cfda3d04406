"""The depth-view caption writer (PointCLIP's fine-tune data): a hand-made ModelNet split in, an open_clip CSV of
grey PNG views out, each view the projection's intensities and each caption the class's prompt."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clipdense.data.formats.imagetext import read_csv
from clipdense.data.formats.modelnet import ModelNetPoints
from clipdense.errors import ConfigError
from clipdense.models.pointviews import PointViewSettings, view_images
from clipdense.tasks.point_captions import view_caption, write_view_captions


def _split(tmp_path: Path) -> Path:
    root = tmp_path / "modelnet40_normal_resampled"
    for name in ("cup", "night_stand"):
        (root / name).mkdir(parents=True)
    (root / "modelnet40_shape_names.txt").write_text("cup\nnight_stand\n")
    (root / "modelnet40_train.txt").write_text("night_stand_0001\ncup_0003\n")
    # a point on the origin and one at x = 0.5: after normalisation (box centre 0.25, radius 0.25) they sit at
    # x = -1 and x = +1; a cup of three points along z
    (root / "night_stand" / "night_stand_0001.txt").write_text("0,0,0,0,0,1\n0.5,0,0,0,0,1\n")
    (root / "cup" / "cup_0003.txt").write_text("0,0,0,1,0,0\n0,0,1,1,0,0\n0,0,2,1,0,0\n")
    return root


def test_views_and_captions_of_a_hand_made_split(tmp_path: Path) -> None:
    reader = ModelNetPoints(_split(tmp_path), "train", num_points=0)
    path = write_view_captions(reader, tmp_path / "out", size=16)
    assert path == tmp_path / "out" / "views.csv"
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["filepath", "title"] and len(rows) == 1 + 2 * 6         # two shapes x six views
    assert rows[1] == ["views/night_stand_0001_v0.png", "point cloud depth map of a night_stand."]
    assert rows[7] == ["views/cup_0003_v0.png", "point cloud depth map of a cup."]
    assert {r[1] for r in rows[7:]} == {"point cloud depth map of a cup."}
    # the engine's reader takes it as it is: paths relative to the CSV's folder
    assert read_csv(path)[0] == (str(tmp_path / "out" / "views" / "night_stand_0001_v0.png"),
                                 "point cloud depth map of a night_stand.")
    # each PNG is the projection's intensities x 255 (8-bit grey): the front view of the cup's points is a
    # vertical line of three lit pixels
    for key, index in (("night_stand_0001", 0), ("cup_0003", 1)):
        expected = view_images(reader[index].points[None].float(), 16, PointViewSettings())[0]
        for m in range(6):
            image = Image.open(tmp_path / "out" / "views" / f"{key}_v{m}.png")
            assert image.mode == "L" and image.size == (16, 16)
            pixels = torch.from_numpy(np.asarray(image).astype(np.float32))
            assert torch.equal(pixels, (expected[m] * 255).round())
    front = np.asarray(Image.open(tmp_path / "out" / "views" / "cup_0003_v0.png"))
    lit = np.argwhere(front > 0)
    assert len(lit) == 3 and len(set(lit[:, 1])) == 1                         # one column, three rows
    # on the front camera's focal plane (depth 2 = camera distance): intensity 1 - 0.7 * (2 - 1) / 2 = 0.65
    assert set(front[front > 0].tolist()) == {round(0.65 * 255)}


def test_prompt_sets_taken_in_turn() -> None:
    fill = [lambda c: f"a {c}.", lambda c: f"the {c}!"]
    captions = [view_caption("cube", fill, shape, view, 6) for shape in range(2) for view in range(6)]
    assert captions == ["a cube.", "the cube!"] * 6


def test_bad_size_and_templates_refused(tmp_path: Path) -> None:
    reader = ModelNetPoints(_split(tmp_path), "train", num_points=0)
    with pytest.raises(ConfigError, match="size 4"):
        write_view_captions(reader, tmp_path / "a", size=4)
    with pytest.raises(ConfigError, match="templates"):
        write_view_captions(reader, tmp_path / "b", templates="no placeholder")
