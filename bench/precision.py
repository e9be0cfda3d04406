"""fp32 against bf16 autocast for one dense forward, per tower and image side: where `--precision auto` comes from.

    OMP_NUM_THREADS=2 python bench/precision.py --threads 2 --models tiny-vit-t8,tiny-vit-s8,ViT-S-16,ViT-B-16

Random-init weights (the cost is the same as trained); whole-image maskclip forward of one image; median of 3 timed
calls after one warm-up. Only meaningful on an idle machine.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

import clipdense as cd
from clipdense.models.precision import inference_precision


def median_seconds(model: torch.nn.Module, image: torch.Tensor, precision: str, repeats: int = 3) -> float:
    """Median wall seconds of ``encode_dense`` under ``precision`` (one untimed warm-up call first)."""
    with torch.no_grad(), inference_precision("cpu", precision):
        cd.encode_dense(model, image, mode="maskclip")
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            cd.encode_dense(model, image, mode="maskclip")
            times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="tiny-vit-t8,tiny-vit-s8,ViT-S-16,ViT-B-16")
    parser.add_argument("--sides", default="224,448")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    for name in args.models.split(","):
        model = cd.load_model(name, pretrained=None, device="cpu").model
        for side in (int(s) for s in args.sides.split(",")):
            image = torch.randn(1, 3, side, side)
            fp32, bf16 = (median_seconds(model, image, p) for p in ("fp32", "bf16"))
            print(json.dumps({"model": name, "side": side, "fp32_s": round(fp32, 4), "bf16_s": round(bf16, 4),
                              "bf16_speedup": round(fp32 / bf16, 2)}), flush=True)


if __name__ == "__main__":
    main()
