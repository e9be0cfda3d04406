"""Zero-shot segmentation throughput (issue 7): images/s of every dense mode at 448 and 896 px.

The timed call is the library's own ``segment_logits`` (dense forward of the mode, cosine against
a C-class text classifier, bilinear upsampling to the input size) plus the argmax to labels, on
a device-resident random batch, whole-image inference. The text classifier is computed once per
class list, so it is a fixed random unit-norm (C, D) matrix here (C = 150, ADE20K's count).

    python bench/segment_throughput.py --out runs/bench/segment.json
    python bench/segment_throughput.py --smoke --device cpu --out /tmp/segment_smoke.json
"""
from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (bench/ is a folder of scripts, not a package)

from clipdense.models import load_model  # noqa: E402
from clipdense.models.dense import DENSE_MODES  # noqa: E402
from clipdense.tasks.segment import segment_logits  # noqa: E402

DEFAULT_SIZES = "448:32,896:8"
SMOKE_SIZES = "64:2,128:2"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_args(parser)
    parser.add_argument("--model", default=None, help="default ViT-B-16 (smoke: tiny-vit-t8)")
    parser.add_argument("--sizes", default=None, help=f"SIDE:BATCH,... (default {DEFAULT_SIZES})")
    parser.add_argument("--modes", default=",".join(DENSE_MODES), help="dense modes to time")
    parser.add_argument("--precisions", default=None, help="bf16 (autocast) and/or fp32 (default bf16,fp32)")
    parser.add_argument("--classes", type=int, default=150, help="classes in the text classifier")
    parser.add_argument("--window", type=int, default=None, help="sliding-window side (default: whole image)")
    args = parser.parse_args()
    args.model = args.model or ("tiny-vit-t8" if args.smoke else "ViT-B-16")
    args.sizes = args.sizes or (SMOKE_SIZES if args.smoke else DEFAULT_SIZES)
    args.precisions = args.precisions or ("fp32" if args.smoke else "bf16,fp32")
    return args


def size_specs(text: str) -> list[tuple[int, int]]:
    """'448:32,896:8' -> [(side, batch), ...]."""
    return [(int(side), int(batch)) for side, batch in (p.strip().split(":") for p in text.split(","))]


def segment_step(model: torch.nn.Module, images: torch.Tensor, classifier: torch.Tensor, mode: str,
                 precision: str, window: int | None) -> Callable[[], torch.Tensor]:
    """Labels (B, H, W) of a batch, as the segmentation task computes them."""
    device = images.device

    @torch.no_grad()
    def step() -> torch.Tensor:
        autocast = torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" \
            else contextlib.nullcontext()
        with autocast:
            return segment_logits(model, images, classifier, mode, window).argmax(dim=1)
    return step


def measure(model: torch.nn.Module, side: int, batch: int, mode: str, precision: str, classes: int,
            device: torch.device, args: argparse.Namespace, peak: float) -> dict[str, Any]:
    steps, warmup = common.steps_and_warmup(args)
    images = torch.randn(batch, 3, side, side, device=device)
    dim = int(model.visual.output_dim)
    classifier = F.normalize(torch.randn(classes, dim, device=device), dim=-1)
    step = segment_step(model, images, classifier, mode, precision, args.window)
    flops = common.count_flops(step)
    common.reset_peak_memory(device)
    clock = common.StepClock(device, warmup, steps, args.config_limit_s)
    common.run_loop(step, clock)
    return common.rate_fields(clock, batch, flops, peak, device)


COLUMNS = [("model", "model", ""), ("side", "px", "d"), ("batch", "batch", "d"), ("mode", "mode", ""),
           ("precision", "precision", ""), ("images_per_s", "img/s", ".1f"), ("step_ms", "batch ms", ".1f"),
           ("tflops", "TFLOP/s", ".0f"), ("mfu", "MFU", ".2f"), ("peak_mem_gib", "peak GiB", ".2f")]


def main() -> None:
    args = parse_args()
    device, results, peak = common.start_run(args)
    model = load_model(args.model, device=device).model.eval()
    for side, batch in size_specs(args.sizes):
        for precision in args.precisions.split(","):
            for mode in args.modes.split(","):
                row = {"model": args.model, "side": side, "batch": batch, "mode": mode, "precision": precision,
                       "classes": args.classes, "window": args.window}
                results.run(row, lambda s=side, b=batch, m=mode, p=precision: measure(
                    model, s, b, m, p, args.classes, device, args, peak), device)
    results.write()
    print("\n" + common.summary_line(results.env, peak) + "\n")
    print(common.markdown_table(results.rows, COLUMNS))


if __name__ == "__main__":
    main()
