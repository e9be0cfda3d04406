"""PointCLIP on the 3-D world (docs/results/3d.md): zero-shot V1 / V2 with the paper's prompts, with and without the
view-weight search (searched on the train split's first shapes, scored on test), and the inter-view adapter
few-shot (K shots per class, seeds), all with the shipped tiny CLIP.

    OMP_NUM_THREADS=1 python bench/points.py --out /tmp/points-bench [--shots 1,4,16 --seeds 0,1 --steps 60]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import clipdense as cd
from clipdense.data.formats.modelnet import ModelNetPoints
from clipdense.data.world.points3d import write_points_world
from clipdense.data.world.shapes3d import Shapes3DConfig
from clipdense.models.pointviews import PointViewSettings
from clipdense.tasks.points import combine_views, search_view_weights, view_logits
from clipdense.tasks.points_fewshot import PointAdaptConfig, fit_point_adapter, point_accuracy, point_features


def zero_shot(bundle, train: ModelNetPoints, test: ModelNetPoints, projection: str, templates: str) -> dict:
    settings = PointViewSettings(projection=projection)
    held = list(range(0, len(train), max(1, len(train) // 40)))[:40]      # a small held-out set for the search
    f_val, y_val = point_features(bundle, train, settings, held)
    f_test, y_test = point_features(bundle, test, settings)
    l_val, l_test = (view_logits(bundle, f, train.classes, templates) for f in (f_val, f_test))
    plain = float((combine_views(l_test, None).argmax(-1) == y_test).float().mean() * 100)
    weights, _ = search_view_weights(l_val, y_val)
    searched = float((combine_views(l_test, weights).argmax(-1) == y_test).float().mean() * 100)
    return {"projection": projection, "templates": templates, "top1": plain, "top1_view_search": searched,
            "weights": weights}


def main() -> None:
    torch.set_num_threads(1)
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--shots", default="1,4,16")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--steps", type=int, default=60)
    args = p.parse_args()
    out = Path(args.out)
    world = out / "world"
    if not (world / "shapes3d.json").is_file():
        write_points_world(world, Shapes3DConfig(train_per_class=24, test_per_class=12, points=1024))
    root = world / "modelnet40_normal_resampled"
    train, test = ModelNetPoints(root, "train"), ModelNetPoints(root, "test")
    bundle = cd.load_model("tiny-vit-t8", pretrained="synthworld")
    rows = [zero_shot(bundle, train, test, proj, tpl) for proj in ("v1", "v2") for tpl in ("pointclip", "pointclip-v2")]
    for row in rows:
        print(json.dumps(row), flush=True)
    for shots in (int(s) for s in args.shots.split(",")):
        for seed in (int(s) for s in args.seeds.split(",")):
            start = time.perf_counter()
            adapter, info = fit_point_adapter(bundle, train, PointAdaptConfig(
                shots=shots, seed=seed, steps=args.steps, lr=3e-3, batch_size=32, options={"views": 10}))
            row = {"shots": shots, "seed": seed, "top1": point_accuracy(adapter, test),
                   "seconds": round(time.perf_counter() - start, 1)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    (out / "points.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
