"""DepthCLIP on the depth world (docs/results/3d.md): its metrics per dense mode beside two baselines that know
the train split: a constant depth (the train median) and a position cue (the train mean depth of each image row,
which is what a ground plane gives away), all on the val split.

    OMP_NUM_THREADS=1 python bench/depth.py --out /tmp/depth-bench [--val 100] [--model RUN --results depth-RUN.json]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import clipdense as cd
from clipdense.data.formats.nyudepth import DepthFolder
from clipdense.data.world.depth import DepthWorldConfig, write_depth_world
from clipdense.evaluation.depth import add_errors, depth_errors, depth_metrics
from clipdense.tasks.depth import DepthClipConfig


def main() -> None:
    torch.set_num_threads(1)
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--train", type=int, default=100)
    p.add_argument("--val", type=int, default=100)
    p.add_argument("--model", default=None,
                   help="a run dir or weights file to run DepthCLIP with (default: the shipped tiny-vit-t8 synthworld)")
    p.add_argument("--results", default="depth.json", help="results file name under --out")
    args = p.parse_args()
    world = Path(args.out) / "world"
    if not (world / "val.csv").is_file():
        write_depth_world(world, DepthWorldConfig(train=args.train, val=args.val))
    train = DepthFolder(world / "train" / "images", world / "train" / "depth")
    val = DepthFolder(world / "val" / "images", world / "val" / "depth")
    maps = torch.stack([train[i].depth for i in range(len(train))])
    constant, rows = float(maps.median()), maps.mean(dim=(0, 2))
    bundle = cd.load_model(args.model) if args.model else cd.load_model("tiny-vit-t8", pretrained="synthworld")
    methods = {"constant (train median)": lambda s: torch.full_like(s.depth, constant),
               "position cue (train mean per row)": lambda s: rows[:, None].expand_as(s.depth)}
    for mode in ("vanilla", "maskclip", "sclip", "clearclip", "naclip"):
        methods[f"DepthCLIP {mode}"] = lambda s, m=mode: cd.depth(bundle, s.image, DepthClipConfig(mode=m))
    results = {}
    for name, predict in methods.items():
        totals: dict[str, float] = {}
        for i in range(len(val)):
            sample = val[i]
            add_errors(totals, depth_errors(predict(sample), sample.depth))
        results[name] = depth_metrics(totals)
        print(json.dumps({name: results[name]}), flush=True)
    (Path(args.out) / args.results).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
