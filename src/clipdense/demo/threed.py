"""`clipdense demo 3d`: PointCLIP and DepthCLIP with the shipped tiny CLIP (about a minute on 2 cores).

A small 3-D world (ModelNet40's resampled layout) is classified zero-shot through depth views (PointCLIP V1) and by
the inter-view adapter trained on a few shots through the engine; a small depth world (NYU-style 16-bit PNGs) gets
DepthCLIP's training-free depth beside a constant baseline. The report shows each shape's V1 and V2 views with both
predictions, and each scene's true and predicted depth on one colour scale; the predicted depth maps are written
as 16-bit millimetre PNGs too, so every number in the report can be recomputed from the files.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..config import atomic_write_bytes
from ..data.formats.modelnet import ModelNetPoints
from ..data.formats.nyudepth import DepthFolder, write_depth_png
from ..data.world.depth import DepthWorldConfig, write_depth_world
from ..data.world.points3d import RESAMPLED_DIR, write_points_world
from ..data.world.shapes3d import Shapes3DConfig
from ..evaluation import evaluate
from ..evaluation.depth import add_errors, depth_errors, depth_metrics
from ..models import load_model
from ..models.pointviews import PointViewSettings, view_images
from ..tasks.depth import depth, depth_picture
from ..tasks.points import classify_points
from ..tasks.points_fewshot import PointAdaptConfig, fit_point_adapter, point_accuracy, point_features

NEAR_M, FAR_M = 1.0, 5.0      # the colour scale's ends in metres
TILE = 96


@dataclass
class ThreeDDemoConfig:
    """Sizes of the demo's worlds and runs (the defaults fit in about a minute on 2 cores)."""

    shapes: Shapes3DConfig = field(default_factory=lambda: Shapes3DConfig(train_per_class=8, test_per_class=4,
                                                                          points=1024, seed=3))
    shots: int = 8
    steps: int = 60
    shown_shapes: int = 4
    scenes: DepthWorldConfig = field(default_factory=lambda: DepthWorldConfig(train=16, val=8, seed=3))
    shown_scenes: int = 4


def colour_depth(metres: np.ndarray) -> Image.Image:
    """(H, W) metres -> RGB between ``NEAR_M`` and ``FAR_M`` (black where unknown, depth 0)."""
    return depth_picture(metres, NEAR_M, FAR_M)


def titled_row(tiles: list[Image.Image], titles: list[str]) -> Image.Image:
    """Tiles side by side at ``TILE`` px, each under its title."""
    canvas = Image.new("RGB", (TILE * len(tiles), TILE + 14), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (tile, title) in enumerate(zip(tiles, titles)):
        canvas.paste(tile.convert("RGB").resize((TILE, TILE), Image.NEAREST), (i * TILE, 14))
        draw.text((i * TILE + 2, 1), title, fill="black")
    return canvas


def _grey(view: torch.Tensor) -> Image.Image:
    return Image.fromarray((view.clamp(0, 1) * 255).to(torch.uint8).numpy())


def _points_section(bundle: Any, root: Path, config: ThreeDDemoConfig, out: Path, log: Callable[[str], None]
                    ) -> tuple[list[str], dict]:
    train, test = ModelNetPoints(root, "train"), ModelNetPoints(root, "test")
    zero = evaluate(bundle, f"modelnet:root={root}", tasks="points-zeroshot", device="cpu")["tasks"]["points-zeroshot"]
    adapter, _ = fit_point_adapter(bundle, train, PointAdaptConfig(shots=config.shots, seed=0, steps=config.steps,
                                                                   lr=3e-3, options={"views": 10}))
    adapted = point_accuracy(adapter, test)
    log(f"PointCLIP: zero-shot {zero['top1']:.1f}%, adapter ({config.shots} shots) {adapted:.1f}% "
        f"on {len(test)} test shapes")
    results = {"zero_shot_top1": zero["top1"], "adapter_top1": adapted, "test_shapes": len(test),
               "classes": len(test.classes), "shapes": []}
    lines = ["## PointCLIP: shapes seen as depth views", "",
             f"{len(test.classes)} primitives ({', '.join(test.classes)}), {len(train)} train and {len(test)} test "
             f"shapes of {config.shapes.points} points. Zero-shot: 6 V1 depth views, the paper's prompt "
             "(\"point cloud depth map of a {}.\"), equal view weights. Adapter: PointCLIP's inter-view adapter on "
             f"10 views, {config.shots} shots per class, {config.steps} steps through the engine "
             "(`clipdense train --objective pointclip-adapter`).", "",
             "| method | test top-1 | chance |", "|---|---|---|",
             f"| zero-shot (V1, 6 views) | {zero['top1']:.1f}% | {100 / len(test.classes):.1f}% |",
             f"| inter-view adapter, {config.shots} shots | {adapted:.1f}% | {100 / len(test.classes):.1f}% |", "",
             "Each shape: its 6 V1 views (z-buffer depth, near = bright) above its 6 V2 views (voxelised, "
             "densified, smoothed).", "", "| shape | views (V1 above, V2 below) | zero-shot | adapter |",
             "|---|---|---|---|"]
    step = max(1, len(test) // config.shown_shapes)
    for index in list(range(0, len(test), step))[:config.shown_shapes]:
        sample = test[index]
        cloud = sample.points[None]
        rows = [view_images(cloud, 64, PointViewSettings(projection=p))[0] for p in ("v1", "v2")]
        picture = Image.new("RGB", (TILE * 6, 2 * (TILE + 14)), "white")
        for r, (name, views) in enumerate(zip(("V1", "V2"), rows)):
            picture.paste(titled_row([_grey(v) for v in views], [f"{name} view {i + 1}" for i in range(6)]),
                          (0, r * (TILE + 14)))
        picture.save(out / f"views-{sample.key}.png")
        zero_pred = test.classes[int(classify_points(bundle, sample.points, test.classes).argmax())]
        features, _ = point_features(bundle, test, PointViewSettings(views=10), [index])
        adapt_pred = test.classes[int(adapter.eval().logits(features).argmax(-1))]
        true = test.classes[sample.image_label]
        results["shapes"].append({"key": sample.key, "true": true, "zero_shot": zero_pred, "adapter": adapt_pred})
        lines.append(f"| {sample.key} ({true}) | ![](views-{sample.key}.png) | {zero_pred} | {adapt_pred} |")
    return lines, results


def _depth_section(bundle: Any, world: Path, config: ThreeDDemoConfig, out: Path, log: Callable[[str], None]
                   ) -> tuple[list[str], dict]:
    train = DepthFolder(world / "train" / "images", world / "train" / "depth")
    val = DepthFolder(world / "val" / "images", world / "val" / "depth")
    constant = float(torch.stack([train[i].depth for i in range(len(train))]).median())
    totals: dict[str, dict[str, float]] = {"DepthCLIP (maskclip)": {}, "constant (train median)": {}}
    lines = ["", "## DepthCLIP: training-free depth", "",
             f"{len(val)} val scenes of the depth world ({config.scenes.image_size} px; things at 1.2-4.5 m on a "
             "ground plane before a wall at 5 m). DepthCLIP compares each patch's maskclip feature with \"This "
             "object is {word}\" for the paper's seven distance words and takes the softmax-weighted (T = 0.1) "
             f"mean of their depth bins. Colours run from {NEAR_M:g} m (yellow) to {FAR_M:g} m (purple).", ""]
    pictures = ["| scene | image, true depth, DepthCLIP | AbsRel of this scene |", "|---|---|---|"]
    for index in range(len(val)):
        sample = val[index]
        predicted = depth(bundle, sample.image)
        write_depth_png(out / f"depth-{sample.key}.png", predicted.numpy())
        add_errors(totals["DepthCLIP (maskclip)"], depth_errors(predicted, sample.depth))
        add_errors(totals["constant (train median)"], depth_errors(torch.full_like(sample.depth, constant),
                                                                   sample.depth))
        if index < config.shown_scenes:
            scene = depth_metrics(depth_errors(predicted, sample.depth))
            titled_row([sample.image, colour_depth(sample.depth.numpy()), colour_depth(predicted.numpy())],
                       ["image", "true depth", "DepthCLIP"]).save(out / f"scene-{sample.key}.png")
            pictures.append(f"| {sample.key} | ![](scene-{sample.key}.png) | {scene['abs_rel']:.3f} |")
    metrics = {name: depth_metrics(t) for name, t in totals.items()}
    log("DepthCLIP: AbsRel {:.3f} (constant {:.3f})".format(metrics["DepthCLIP (maskclip)"]["abs_rel"],
                                                            metrics["constant (train median)"]["abs_rel"]))
    lines += ["| method | AbsRel | RMSE (m) | log10 | δ<1.25 |", "|---|---|---|---|---|"]
    lines += [f"| {name} | {m['abs_rel']:.3f} | {m['rmse']:.3f} | {m['log10']:.3f} | {m['delta1']:.3f} |"
              for name, m in metrics.items()]
    lines += ["", f"The constant is the train split's median depth ({constant:.2f} m). Predicted maps: "
              "`depth-<scene>.png` (16-bit, millimetres).", ""] + pictures
    return lines, {"constant_m": constant, **metrics}


def run_3d(out: Path, log: Callable[[str], None], config: ThreeDDemoConfig) -> tuple[Path, dict]:
    """Write both worlds under ``out``, run both methods, write ``out/report.md``; (report, the numbers in it)."""
    torch.manual_seed(0)
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    write_points_world(out / "points", config.shapes)
    write_depth_world(out / "depth-world", config.scenes)
    log(f"3-D and depth worlds written under {out} ({time.perf_counter() - start:.0f} s)")
    bundle = load_model("tiny-vit-t8", pretrained="synthworld", device="cpu")
    points_lines, points = _points_section(bundle, out / "points" / RESAMPLED_DIR, config, out, log)
    depth_lines, depths = _depth_section(bundle, out / "depth-world", config, out, log)
    lines = ["# clipdense demo 3d", "",
             "PointCLIP (point clouds through depth views) and DepthCLIP (depth from distance words) with the "
             "shipped `tiny-vit-t8` / `synthworld` CLIP, which saw filled 2-D silhouettes and never a depth map, a "
             "3-D shape name or a distance word: expect chance zero-shot, and see docs/results/3d.md for the "
             "benchmark.", ""] + points_lines + depth_lines
    lines += ["", f"Made in {time.perf_counter() - start:.0f} s on CPU."]
    report = out / "report.md"
    atomic_write_bytes(report, ("\n".join(lines) + "\n").encode())
    return report, {"points": points, "depth": depths}


def run_3d_demo(out: Path, log: Callable[[str], None]) -> Path:
    """``clipdense demo 3d``: the demo at its default sizes; returns ``out/report.md``."""
    return run_3d(out, log, ThreeDDemoConfig())[0]
