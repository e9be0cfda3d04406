"""The data of PointCLIP's fine-tune row (docs/results/3d.md): the 3-D world of bench/points.py (same config and
seed, so its test shapes are the ones the zero-shot rows were scored on) and its TRAIN shapes rendered into
PointCLIP V1 depth views captioned "point cloud depth map of a {class}.", as an open_clip CSV for the engine.

    OMP_NUM_THREADS=1 python bench/points_finetune.py --out /tmp/points-ft
    OMP_NUM_THREADS=1 clipdense train --objective clip --model tiny-vit-t8 --pretrained synthworld \
        --data /tmp/points-ft/views.csv --steps 200 --batch-size 64 --lr 1e-4 --warmup-steps 20 --seed 0 \
        --out /tmp/points-ft/run
    OMP_NUM_THREADS=1 clipdense eval --model /tmp/points-ft/run --tasks points-zeroshot \
        --data modelnet:root=/tmp/points-ft/world/modelnet40_normal_resampled
"""
from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

import torch

from clipdense.data.formats.modelnet import ModelNetPoints
from clipdense.data.world.points3d import write_points_world
from clipdense.data.world.shapes3d import Shapes3DConfig
from clipdense.models.pointviews import PROJECTIONS, PointViewSettings
from clipdense.tasks.point_captions import write_view_captions


def main() -> None:
    torch.set_num_threads(1)
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--size", type=int, default=64, help="view side in pixels (the tiny CLIP reads 64)")
    p.add_argument("--projection", default="v1", choices=PROJECTIONS)
    p.add_argument("--views", type=int, default=6, choices=(6, 10))
    p.add_argument("--templates", default="pointclip", help="prompt set or one '{}' template of the captions")
    args = p.parse_args()
    out = Path(args.out)
    world = out / "world"
    if not (world / "shapes3d.json").is_file():
        write_points_world(world, Shapes3DConfig(train_per_class=24, test_per_class=12, points=1024))
    train = ModelNetPoints(world / "modelnet40_normal_resampled", "train")
    settings = PointViewSettings(projection=args.projection, views=args.views)
    csv_path = write_view_captions(train, out, args.size, settings, args.templates)
    lines = csv_path.read_text(encoding="utf-8").splitlines()[1:]
    captions = collections.Counter(line.split(",", 1)[1] for line in lines)
    print(json.dumps({"csv": str(csv_path), "shapes": len(train), "views": len(lines),
                      "captions": dict(sorted(captions.items()))}, indent=1))


if __name__ == "__main__":
    main()
