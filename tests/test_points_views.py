"""PointCLIP's projections on hand-placed points (V1: pixels and depths; V2: densify and smooth on one voxel), the
view-weight search, and classification of point clouds and point files."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

import clipdense as cd
from clipdense.data.formats.modelnet import read_point_file, write_off
from clipdense.data.world.shapes3d import PRIMITIVES
from clipdense.errors import DataError
from clipdense.models.pointviews import (Camera, RealisticProjection, densify_and_smooth, gaussian_kernel1d,
                                         project_depth, project_realistic, view_rotations, voxelize)
from clipdense.models.pointviews import PointViewSettings, encode_point_views
from clipdense.tasks.points import combine_views, search_view_weights, view_logits

FRONT, TOP = 0, 4     # view_rotations(6): front looks along +y (z up on screen), top looks down along -z


def test_view_rotations_are_rotations() -> None:
    for count in (6, 10):
        r = view_rotations(count)
        assert r.shape == (count, 3, 3)
        assert torch.allclose(r @ r.transpose(1, 2), torch.eye(3).expand(count, 3, 3), atol=1e-6)
        assert torch.allclose(torch.linalg.det(r), torch.ones(count), atol=1e-6)
    front = view_rotations(6)[FRONT]
    assert front.tolist() == [[1, 0, 0], [0, 0, -1], [0, 1, 0]]   # right = x, down = -z, forward = +y


def test_v1_projection_of_hand_placed_points() -> None:
    # focal 1, camera 2 units behind the origin, 8 x 8 view: pixel = floor((f * q / depth + 1) / 2 * 8)
    camera = Camera(size=8, distance=2.0, focal=1.0)
    points = torch.tensor([[[0.0, 0.0, 0.0],      # front: q=(0,0,0), depth 2 -> pixel (4, 4)
                            [0.5, 0.0, 0.0],      # q=(0.5,0,0), depth 2, u=0.25 -> column floor(5.0)=5, row 4
                            [0.0, -0.5, 0.5],     # q=(0,-0.5,-0.5), depth 1.5, v=-1/3 -> row floor(2.67)=2
                            [0.0, 0.5, 0.0],      # behind the origin: depth 2.5 at (4, 4), hidden by depth 2
                            [0.0, 0.0, 1.9]]])    # q_y=-1.9, depth 2, v=-0.95 -> row floor(0.2)=0
    depth = project_depth(points, view_rotations(6), camera)
    assert depth.shape == (1, 6, 8, 8)
    front = depth[0, FRONT]
    expected = torch.zeros(8, 8)
    expected[4, 4], expected[4, 5], expected[2, 4], expected[0, 4] = 2.0, 2.0, 1.5, 2.0
    assert torch.allclose(front, expected)
    # top view of (0.5, 0.5, 0.5): q = (0.5, -0.5, -0.5), depth 1.5, u = 1/3 -> column 5, v = -1/3 -> row 2
    top = project_depth(torch.tensor([[[0.5, 0.5, 0.5]]]), view_rotations(6), camera)[0, TOP]
    assert top[2, 5] == pytest.approx(1.5) and int((top > 0).sum()) == 1
    # a point splatted as a 3 x 3 square keeps its depth on the 9 pixels around its own
    square = project_depth(points[:, :1], view_rotations(6), camera, point_size=3)[0, FRONT]
    assert torch.equal(square > 0, torch.nn.functional.pad(torch.ones(3, 3, dtype=torch.bool), (3, 2, 3, 2)))


def test_v2_densify_and_smooth_on_one_voxel() -> None:
    camera = Camera(size=8, distance=2.0, focal=1.0)
    origin = torch.zeros(1, 1, 3)
    grid = voxelize(origin, view_rotations(6)[:1], camera, depth_bins=8)
    value = 1 - 0.7 * (2 - 1) / 2      # depth 2 on a [1, 3] range: intensity 0.65
    assert grid.shape == (1, 1, 8, 8, 8) and int((grid > 0).sum()) == 1
    assert grid[0, 0, 4, 4, 4] == pytest.approx(value)           # depth bin floor((2 - 1) / 2 * 8) = 4
    settings = RealisticProjection(depth_bins=8, densify=3, smooth=3, sigma=1.0)
    pooled = densify_and_smooth(grid, RealisticProjection(densify=3, smooth=1))
    assert int((pooled > 0).sum()) == 27 and torch.allclose(pooled[0, 0, 3:6, 3:6, 3:6], torch.full((3, 3, 3), value))
    view = project_realistic(origin, view_rotations(6)[:1], camera, settings)[0, 0]
    side, centre = (float(w) for w in gaussian_kernel1d(3, 1.0)[:2])
    assert side == pytest.approx(math.exp(-0.5) / (1 + 2 * math.exp(-0.5)))
    # max over depth of the smoothed 3x3x3 block: inside it every kernel tap lands in the block; one pixel outside
    # it only the taps at offset 1 reach back in, in each direction the pixel lies outside
    assert view[4, 4] == pytest.approx(value, abs=1e-6)
    assert view[3, 4] == pytest.approx(value * (side + centre), abs=1e-6)
    assert view[2, 4] == pytest.approx(value * side, abs=1e-6)
    assert view[2, 2] == pytest.approx(value * side * side, abs=1e-6)
    assert view[1, 4] == 0 and view[4, 7] == 0


def test_view_weight_search_and_combination() -> None:
    # view 0 always right, view 1 always wrong and louder: equal weights fail, the search keeps view 0
    labels = torch.tensor([0, 1, 2, 0])
    right = torch.nn.functional.one_hot(labels, 3).float()
    wrong = 2 * torch.nn.functional.one_hot((labels + 1) % 3, 3).float()
    logits = torch.stack([right, wrong], 1)
    assert (combine_views(logits, None).argmax(-1) == labels).float().mean() == 0
    weights, acc = search_view_weights(logits, labels, grid=(0.0, 0.5, 1.0))
    assert acc == 100.0 and weights[1] < weights[0] / 2
    assert torch.equal(combine_views(logits, [1.0, 0.0]), right)
    with pytest.raises(cd.ConfigError, match="one per view"):
        combine_views(logits, [1.0])


def test_classify_points_and_point_files(tiny_bundle, tmp_path: Path) -> None:
    classes = ["sphere", "cube", "cone"]
    path = tmp_path / "cube.off"
    write_off(path, *PRIMITIVES["cube"]())
    points = read_point_file(path)
    probs = cd.classify_points(tiny_bundle, points, classes)
    # by hand: the six views' features against the PointCLIP prompt, summed with equal weights, softmax
    feats = encode_point_views(tiny_bundle, torch.from_numpy(points)[None])
    text = cd.text_classifier(tiny_bundle, classes, ["point cloud depth map of a {}."])
    by_hand = (tiny_bundle.model.logit_scale.exp() * feats[0] @ text.T).sum(0).softmax(-1)
    assert torch.allclose(probs, by_hand, atol=1e-5) and probs.shape == (3,)
    assert torch.allclose(view_logits(tiny_bundle, feats, classes).sum(1)[0].softmax(-1), probs, atol=1e-5)
    # a point file goes through classify's registry of media, with the templates given
    via_file = cd.classify(tiny_bundle, str(path), classes, templates="pointclip")
    assert torch.allclose(via_file, probs, atol=1e-5)
    v2 = cd.classify_points(tiny_bundle, points, classes, settings=PointViewSettings(projection="v2"))
    assert v2.shape == (3,) and float(v2.sum()) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(DataError, match="all 4 points are equal"):
        cd.classify_points(tiny_bundle, np.zeros((4, 3)), classes)
    with pytest.raises(cd.ConfigError, match="projection"):
        cd.classify_points(tiny_bundle, points, classes, settings=PointViewSettings(projection="v3"))
