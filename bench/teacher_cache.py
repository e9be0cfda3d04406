"""CLIPSelf teacher cache: time per epoch with and without it, on CPU.

    python bench/teacher_cache.py --world worlds/synthworld --scenes 96 --epochs 3

The teacher is frozen, so with fixed regions its crop embeddings repeat every epoch; the cache
computes them once. Epoch 1 fills the cache, later epochs read it.
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from clipdense.data.world.scenes import SynthConfig
from clipdense.data.world.writers import write_world
from clipdense.train.config import TrainConfig
from clipdense.train.run import run_training


def epoch_times(world: Path, run: Path, cache: Path | None, steps_per_epoch: int, epochs: int, batch: int,
                model: str, pretrained: str | None, max_regions: int, student_size: int) -> list[float]:
    stamps: list[float] = []
    args = {"max_regions": max_regions, "student_size": student_size, "fixed_regions": True}
    if cache is not None:
        args["teacher_cache"] = str(cache)
    config = TrainConfig(objective="clipself", data=str(world), model=model, pretrained=pretrained, out=str(run),
                         steps=steps_per_epoch * epochs, batch_size=batch, lr=1e-5, warmup_steps=1,
                         checkpoint_every=10**6, log_every=10**6, device="cpu", num_workers=0,
                         objective_args=args)
    start = time.perf_counter()
    run_training(config,
                 hooks=[lambda step, trainer: stamps.append(time.perf_counter())])
    ends = [stamps[(e + 1) * steps_per_epoch - 1] for e in range(epochs)]
    return [round(b - a, 2) for a, b in zip([start] + ends[:-1], ends)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=96, help="training images (one epoch)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--model", default="tiny-vit-t8")
    parser.add_argument("--pretrained", default="synthworld")
    parser.add_argument("--max-regions", type=int, default=20)
    parser.add_argument("--student-size", type=int, default=128)
    parser.add_argument("--out", default=None, help="JSON file for the numbers")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cache-bench-"))
    try:
        write_world(SynthConfig(out=str(tmp / "world"), train=args.scenes, val=0, image_size=64,
                                classify_train_per_class=0, classify_val_per_class=0))
        steps = args.scenes // args.batch_size
        common = (steps, args.epochs, args.batch_size, args.model, args.pretrained, args.max_regions,
                  args.student_size)
        plain = epoch_times(tmp / "world", tmp / "plain", None, *common)
        cached = epoch_times(tmp / "world", tmp / "cached", tmp / "cache", *common)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = {"config": vars(args), "seconds_per_epoch_without_cache": plain, "seconds_per_epoch_with_cache": cached,
              "speedup_later_epochs": round(sum(plain[1:]) / max(sum(cached[1:]), 1e-9), 2)}
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
