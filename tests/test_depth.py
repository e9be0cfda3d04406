"""DepthCLIP on hand-made features, the depth metrics against hand-computed values, NYU-style depth PNGs (units
refused in one line), the depth world's geometry, `clipdense depth` and eval task `depth`."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import clipdense as cd
from clipdense.cli.main import main
from clipdense.data.formats.nyudepth import DepthFolder, read_depth_png, write_depth_png
from clipdense.data.world.depth import (CAMERA_HEIGHT, HORIZON, WALL, DepthWorldConfig, background_depth,
                                        generate_depth_scene, write_depth_world)
from clipdense.errors import DataError
from clipdense.evaluation.depth import add_errors, depth_errors, depth_metrics
from clipdense.tasks.depth import DEPTH_BINS, DepthClipConfig, depth_from_features


def test_depth_from_hand_made_features() -> None:
    # two bins (1 m, 3 m); a patch equal to text 0, one equal to text 1, one half-way
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    s = 1 / math.sqrt(2)
    dense = torch.tensor([[1.0, 0.0], [0.0, 1.0], [s, s]]).T.reshape(1, 2, 1, 3)
    out = depth_from_features(dense, text, [1.0, 3.0], temperature=0.1)
    p = 1 / (1 + math.exp(-10))            # softmax of (1/0.1, 0/0.1)
    assert torch.allclose(out[0, 0], torch.tensor([p * 1 + (1 - p) * 3, (1 - p) * 1 + p * 3, 2.0]), atol=1e-6)
    assert DepthClipConfig().bins == DEPTH_BINS and len(DepthClipConfig().words) == 7
    with pytest.raises(cd.ConfigError, match="one bin per word"):
        DepthClipConfig(bins=(1.0,)).validate()


def test_depth_metrics_by_hand() -> None:
    pred = torch.tensor([[1.0, 2.0], [4.0, 9.0]])
    target = torch.tensor([[1.0, 1.0], [5.0, 0.0]])      # the 0 is unknown and left out
    totals: dict[str, float] = {}
    add_errors(totals, depth_errors(pred, target))
    m = depth_metrics(totals)
    assert m["pixels"] == 3
    assert m["abs_rel"] == pytest.approx((0 + 1 + 0.2) / 3)
    assert m["rmse"] == pytest.approx(math.sqrt((0 + 1 + 1) / 3))
    assert m["log10"] == pytest.approx((0 + math.log10(2) + abs(math.log10(0.8))) / 3)
    # ratios max(d/g, g/d): 1, 2, 1.25 -> < 1.25: one; < 1.5625: two; < 1.953: two
    assert (m["delta1"], m["delta2"], m["delta3"]) == pytest.approx((1 / 3, 2 / 3, 2 / 3))


def test_depth_png_units(tmp_path: Path) -> None:
    metres = np.array([[0.0, 1.2344], [2.5, 10.0]], dtype=np.float32)
    write_depth_png(tmp_path / "d.png", metres)
    with Image.open(tmp_path / "d.png") as handle:
        assert handle.mode.startswith("I") and np.asarray(handle).tolist() == [[0, 1234], [2500, 10000]]
    assert np.allclose(read_depth_png(tmp_path / "d.png"), [[0, 1.234], [2.5, 10]])
    Image.fromarray(np.array([[1, 3]], dtype=np.uint16)).save(tmp_path / "metres.png")
    with pytest.raises(DataError, match="looks like metres"):
        read_depth_png(tmp_path / "metres.png")
    Image.fromarray(np.array([[1, 3]], dtype=np.uint8)).save(tmp_path / "eight.png")
    with pytest.raises(DataError, match="expected a 16-bit PNG"):
        read_depth_png(tmp_path / "eight.png")


def test_depth_world_geometry(tmp_path: Path) -> None:
    size = 96
    ground = background_depth(size)
    row = 62                                         # pixel centre 62.5 is 62.5 - 38.4 px below the horizon
    assert ground[row, 0] == pytest.approx(CAMERA_HEIGHT * size / (62.5 - HORIZON * size)) and ground[0, 0] == WALL
    config = DepthWorldConfig(train=2, val=3, image_size=size)
    image, depth, caption = generate_depth_scene(config, "val", 0)
    again = generate_depth_scene(config, "val", 0)
    assert np.array_equal(image, again[0]) and np.array_equal(depth, again[1]) and caption == again[2]
    assert image.shape == (size, size, 3) and depth.min() > 0 and caption.endswith(".")
    things = depth[depth != ground]                   # the things stand at one z each, nearer than the wall
    assert things.size and things.max() < WALL
    write_depth_world(tmp_path, config)
    reader = DepthFolder(tmp_path / "val" / "images", tmp_path / "val" / "depth")
    sample = reader[0]
    assert len(reader) == 3 and sample.depth.shape == (size, size)
    assert np.allclose(sample.depth.numpy(), depth, atol=6e-4)       # millimetre rounding
    assert (tmp_path / "train.csv").read_text().startswith("filepath,title")


def test_apparent_size_falls_with_depth() -> None:
    config = DepthWorldConfig(image_size=96, max_things=1)
    pairs = []
    for index in range(40):
        _, depth, _ = generate_depth_scene(config, "train", index)
        mask = depth != background_depth(96)
        if mask.any():
            pairs.append((float(depth[mask].max()), int(mask.sum())))
    z, area = np.array(pairs).T
    # area ~ (f R / z)^2: log area against log z has a slope near -2 (R varies, occluders none)
    slope = np.polyfit(np.log(z), np.log(area), 1)[0]
    assert -2.6 < slope < -1.4


def test_depth_task_and_cli(tiny_bundle, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    image = tmp_path / "scene.png"
    Image.fromarray(generate_depth_scene(DepthWorldConfig(), "val", 1)[0]).save(image)
    metres = cd.depth(tiny_bundle, str(image))
    assert metres.shape == (96, 96) and float(metres.min()) >= 1.0 and float(metres.max()) <= 3.0
    out = tmp_path / "d.png"
    assert main(["depth", str(image), "--out", str(out), "--model", "tiny-vit-t8"]) == 0
    assert np.allclose(read_depth_png(out), metres.numpy(), atol=6e-4)
    with pytest.raises(SystemExit):
        main(["depth", str(image), "--temperature", "-1"])
    assert "expected a number > 0" in capsys.readouterr().err
    assert main(["depth", str(image), "--out", str(tmp_path / "d.jpg")]) == 2


def test_cli_synth_depth(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "w"
    common = ["data", "synth", "--out", str(out), "--train", "0", "--val", "0", "--classify-train-per-class", "0",
              "--classify-val-per-class", "0", "--image-size", "48", "--seed", "3"]
    assert main(common + ["--depth-scenes", "4"]) == 2
    assert "--depth-scenes: only with --depth" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:          # argparse refuses the bad count in one line
        main(common + ["--depth", "--depth-scenes", "0"])
    assert exit_info.value.code == 2 and "expected a count >= 1" in capsys.readouterr().err
    assert main(common + ["--depth", "--depth-scenes", "4"]) == 0
    assert "wrote 4 train + 1 val depth scenes" in capsys.readouterr().out
    val = DepthFolder(out / "depth" / "val" / "images", out / "depth" / "val" / "depth")
    image, metres, _ = generate_depth_scene(DepthWorldConfig(image_size=48, seed=3), "val", 0)
    assert len(val) == 1 and np.array_equal(np.asarray(val[0].image), image)     # the world's seed and size
    assert np.allclose(val[0].depth.numpy(), metres, atol=5e-4)                    # millimetres on disk
