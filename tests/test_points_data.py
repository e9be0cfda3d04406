"""The 3-D world and ModelNet40's layouts: OFF and resampled-txt readers on hand-written files, surface sampling,
degenerate clouds refused in one line, `data synth --points`."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from clipdense.cli.main import main
from clipdense.data.formats.modelnet import (ModelNetPoints, check_points, read_off, read_point_file, write_off)
from clipdense.data.media import media_kind
from clipdense.data.readers import open_data
from clipdense.data.world.points3d import write_points_world
from clipdense.data.world.shapes3d import PRIMITIVES, Shapes3DConfig, face_areas_normals, sample_surface
from clipdense.errors import DataError

TETRA = """OFF
# a comment line
4 2 0
0 0 0
1 0 0
1 1 0
0 0 1
4 0 1 2 3
3 0 1 3
"""


def test_off_reader_hand_written(tmp_path: Path) -> None:
    path = tmp_path / "t.off"
    path.write_text(TETRA)
    vertices, faces = read_off(path)
    assert vertices.tolist() == [[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 0, 1]]
    # the quad is fan-triangulated from its first vertex, then the triangle follows
    assert faces.tolist() == [[0, 1, 2], [0, 2, 3], [0, 1, 3]]


def test_off_glued_header_and_round_trip(tmp_path: Path) -> None:
    glued = tmp_path / "glued.off"
    glued.write_text("OFF3 1 0\n0 0 0\n2 0 0\n0 2 0\n3 0 1 2\n")   # ModelNet40's known quirk
    vertices, faces = read_off(glued)
    assert faces.tolist() == [[0, 1, 2]] and vertices[1].tolist() == [2, 0, 0]
    back = tmp_path / "back.off"
    write_off(back, *PRIMITIVES["cube"]())
    v2, f2 = read_off(back)
    v, f = PRIMITIVES["cube"]()
    assert np.allclose(v2, v) and (f2 == f).all()


@pytest.mark.parametrize("text, words", [
    ("", "not an OFF file"),
    ("PLY\n", "not an OFF file"),
    ("OFF\n3 x 0\n", "is not numbers"),
    ("OFF\n3 1 0\n0 0 0\n1 0 0\n", r"header says 3 vertices \+ 1 faces"),
    ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n", "names vertex 7"),
    ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1\n3 0 1 2\n", "three coordinates"),
    ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n2 0 1\n", "n >= 3"),
])
def test_malformed_off_is_one_line(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "bad.off"
    path.write_text(text)
    with pytest.raises(DataError, match=words) as info:
        read_off(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


@pytest.mark.parametrize("points, words", [
    (np.zeros((0, 3)), "empty point cloud"),
    (np.array([[0, 0, np.nan], [1, 1, 1]]), "NaN"),
    (np.ones((5, 3)), "all 5 points are equal"),
    (np.ones((5, 2)), r"shape \(N, 3\)"),
])
def test_degenerate_clouds_refused(points: np.ndarray, words: str) -> None:
    with pytest.raises(DataError, match=words):
        check_points(points, "cloud.xyz")


def test_point_files(tmp_path: Path) -> None:
    xyz = tmp_path / "a.xyz"
    xyz.write_text("0 0 0\n1 2 3\n")
    assert read_point_file(xyz).tolist() == [[0, 0, 0], [1, 2, 3]]
    assert media_kind(xyz) == media_kind(tmp_path / "m.OFF") == media_kind("p.pts") == "points"
    same = tmp_path / "same.pts"
    same.write_text("1,1,1\n1,1,1\n")
    with pytest.raises(DataError, match="equal"):
        read_point_file(same)
    ragged = tmp_path / "r.xyz"
    ragged.write_text("0 0 0\n1 2\n")
    with pytest.raises(DataError, match="different numbers of columns"):
        read_point_file(ragged)


def test_surface_sampling_is_area_weighted_and_on_the_surface() -> None:
    # two triangles in the plane z=0: areas 0.5 and 1.5 (x in [0,1] and x in [1,4]: disjoint)
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 0, 0], [4, 0, 0], [1, 1, 0]], dtype=float)
    faces = np.array([[0, 1, 2], [3, 4, 5]])
    points, normals = sample_surface(vertices, faces, 8000, np.random.default_rng(0))
    share = (points[:, 0] > 1).mean()
    assert abs(share - 0.75) < 0.02 and np.allclose(points[:, 2], 0) and np.allclose(np.abs(normals[:, 2]), 1)
    inside = (points[:, 0] <= 1)
    assert (points[inside, 0] + points[inside, 1] <= 1 + 1e-9).all()   # inside the first triangle
    cube_points, _ = sample_surface(*PRIMITIVES["cube"](), 500, np.random.default_rng(1))
    assert np.allclose(np.abs(cube_points).max(1), 0.75)              # every point on a face of the cube
    areas, _ = face_areas_normals(*PRIMITIVES["cube"]())
    assert areas.sum() == pytest.approx(6 * 1.5 ** 2)


def test_resampled_reader_hand_written(tmp_path: Path) -> None:
    root = tmp_path / "modelnet40_normal_resampled"
    (root / "night_stand").mkdir(parents=True)
    (root / "cup").mkdir()
    (root / "modelnet40_shape_names.txt").write_text("cup\nnight_stand\n")
    (root / "modelnet40_train.txt").write_text("night_stand_0001\ncup_0003\n")
    (root / "modelnet40_test.txt").write_text("cup_0004\n")
    (root / "night_stand" / "night_stand_0001.txt").write_text("0,0,0,0,0,1\n1,0,0,0,0,1\n0,1,0,0,0,1\n")
    (root / "cup" / "cup_0003.txt").write_text("0,0,0,1,0,0\n0,0,2,1,0,0\n")
    reader = ModelNetPoints(root, "train", num_points=2)
    assert reader.classes == ["cup", "night_stand"] and len(reader) == 2
    first = reader[0]
    assert first.key == "night_stand_0001" and first.image_label == 1 and first.image is None
    assert first.points.tolist() == [[0, 0, 0], [1, 0, 0]]          # the first num_points rows, xyz only
    assert reader[1].points.tolist() == [[0, 0, 0], [0, 0, 2]] and reader[1].image_label == 0
    with pytest.raises(DataError, match="missing"):
        ModelNetPoints(root, "val")[0]                               # val reads test; cup_0004.txt is absent
    (root / "modelnet40_test.txt").write_text("chair_0001\n")
    with pytest.raises(DataError, match="chair"):
        ModelNetPoints(root, "test")


def test_world_in_both_layouts(tmp_path: Path) -> None:
    config = Shapes3DConfig(classes=["cube", "sphere", "torus"], train_per_class=2, test_per_class=1, points=300,
                            partial_fraction=1.0, noise=0.01)
    assert write_points_world(tmp_path / "a", config) == {"train": 6, "test": 3}
    write_points_world(tmp_path / "b", config)
    for name in ("ModelNet40/cube/train/cube_0001.off", "modelnet40_normal_resampled/torus/torus_0003.txt"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()   # deterministic
    meshes, _, info = open_data(f"modelnet:root={tmp_path / 'a' / 'ModelNet40'},num_points=64", {"points"}, "test")
    points, _, info2 = open_data(f"modelnet:root={tmp_path / 'a' / 'modelnet40_normal_resampled'}", {"points"},
                                 "test")
    assert info.classes == info2.classes == ("cube", "sphere", "torus")
    assert [meshes[i].key for i in range(3)] == [points[i].key for i in range(3)] == ["cube_0003", "sphere_0003",
                                                                                      "torus_0003"]
    assert meshes[0].points.shape == (64, 3) and torch.equal(meshes[0].points, meshes[0].points)
    assert points[2].points.shape == (300, 3)
    cube = meshes[0].points
    assert float(cube.norm(dim=1).max()) < 1.2 * 0.75 * 3 ** 0.5 + 0.3    # a scaled, tilted cube, nothing else


def test_cli_synth_points(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "w"
    common = ["data", "synth", "--out", str(out), "--train", "0", "--val", "0", "--classify-train-per-class", "0",
              "--classify-val-per-class", "0"]
    assert main(common + ["--points-per-class", "2"]) == 2
    assert "only with --points" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:          # argparse refuses the bad count in one line
        main(common + ["--points", "--points-per-class", "0"])
    assert exit_info.value.code == 2 and "expected a count >= 1" in capsys.readouterr().err
    assert main(common + ["--points", "--points-per-class", "2"]) == 0
    assert "16 train + 8 test shapes" in capsys.readouterr().out
    assert len(list((out / "points" / "ModelNet40").glob("*/test/*.off"))) == 8
