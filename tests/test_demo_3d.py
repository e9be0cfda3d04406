"""`clipdense demo 3d`: the depth colour scale by hand, the registration, and a small run (about 1.5 s) whose report
names pictures that exist and numbers that the written files and the library calls reproduce."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

import clipdense as cd
from clipdense.data.formats.modelnet import ModelNetPoints
from clipdense.data.formats.nyudepth import DepthFolder, read_depth_png
from clipdense.data.world.depth import DepthWorldConfig
from clipdense.data.world.points3d import RESAMPLED_DIR
from clipdense.data.world.shapes3d import Shapes3DConfig
from clipdense.demo import families, threed
from clipdense.evaluation.depth import add_errors, depth_errors, depth_metrics


def test_colour_scale_by_hand() -> None:
    metres = np.array([[1.0, 3.0, 5.0, 0.0, 0.5, 9.0]], dtype=np.float32)
    rgb = np.asarray(threed.colour_depth(metres))[0]
    # 1 m and 5 m are the ends, 3 m the middle stop; unknown (0) is black; beyond the ends clamps
    assert rgb.tolist() == [[253, 231, 37], [33, 145, 140], [68, 1, 84], [0, 0, 0], [253, 231, 37], [68, 1, 84]]
    two = np.asarray(threed.colour_depth(np.array([[2.0]], dtype=np.float32)))[0, 0]
    assert two.tolist() == [94, 201, 98]                   # 2 m = position 0.25, the second stop


def test_titled_row_layout() -> None:
    from PIL import Image
    row = threed.titled_row([Image.new("L", (8, 8), 255), Image.new("RGB", (32, 16), (255, 0, 0))], ["a", "b"])
    assert row.size == (2 * threed.TILE, threed.TILE + 14)
    assert row.getpixel((threed.TILE + 5, 50)) == (255, 0, 0) and row.getpixel((5, 50)) == (255, 255, 255)


def test_registered_as_3d() -> None:
    assert families.family_demo("3d") is threed.run_3d_demo


@pytest.fixture
def one_thread():
    """One torch thread for this test only: a thread count left changed makes later in-process training differ
    bit-wise from its subprocess half (the SIGKILL-and-resume tests compare the two)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_small_demo_report(tmp_path: Path, one_thread) -> None:
    config = threed.ThreeDDemoConfig(
        shapes=Shapes3DConfig(classes=["cube", "sphere"], train_per_class=2, test_per_class=2, points=256, seed=1),
        shots=1, steps=4, shown_shapes=2, scenes=DepthWorldConfig(train=2, val=3, image_size=48, seed=1),
        shown_scenes=2)
    out = tmp_path / "demo"
    report, results = threed.run_3d(out, lambda _: None, config)
    text = report.read_text()
    pictures = re.findall(r"!\[\]\(([^)]+)\)", text)
    assert len(pictures) == 4 and all((out / p).is_file() for p in pictures)      # 2 shapes + 2 scenes shown
    # zero-shot: the eval task's accuracy equals cd.classify_points shape by shape
    test = ModelNetPoints(out / "points" / RESAMPLED_DIR, "test")
    bundle = cd.load_model("tiny-vit-t8", pretrained="synthworld", device="cpu")
    hits = [int(cd.classify_points(bundle, test[i].points, test.classes).argmax()) == test[i].image_label
            for i in range(len(test))]
    assert results["points"]["zero_shot_top1"] == pytest.approx(100 * sum(hits) / len(hits))
    assert f"| zero-shot (V1, 6 views) | {100 * sum(hits) / len(hits):.1f}% | 50.0% |" in text
    assert f"| inter-view adapter, 1 shots | {results['points']['adapter_top1']:.1f}% |" in text
    # depth: the report's AbsRel comes back from the written 16-bit predictions and the true maps
    val = DepthFolder(out / "depth-world" / "val" / "images", out / "depth-world" / "val" / "depth")
    totals: dict[str, float] = {}
    for i in range(len(val)):
        predicted = torch.from_numpy(read_depth_png(out / f"depth-{val[i].key}.png"))
        add_errors(totals, depth_errors(predicted, val[i].depth))
    abs_rel = depth_metrics(totals)["abs_rel"]
    reported = results["depth"]["DepthCLIP (maskclip)"]["abs_rel"]
    assert abs(abs_rel - reported) < 1e-3
    assert f"| DepthCLIP (maskclip) | {reported:.3f} |" in text
    assert results["depth"]["constant (train median)"]["pixels"] == 3 * 48 * 48
