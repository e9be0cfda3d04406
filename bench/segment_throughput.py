"""Zero-shot segmentation throughput (issues 7, 14): images/s of every dense mode, per architecture.

The timed image part is the library's own ``segment_logits`` (dense forward of the mode, cosine
against a C-class text classifier, bilinear upsampling to the input size) plus the argmax to labels,
on a device-resident random batch, whole-image inference. The text classifier is computed once per
class list, so it is a fixed random unit-norm (C, D) matrix there (C = 150, ADE20K's count); the text
part is timed apart: ``encode_text`` of ``--text-prompts`` random token sequences (one template per
class). A mode an architecture cannot run is a row with its one-line error; the support table
(architectures x modes) is printed from those rows.

    python bench/segment_throughput.py --out runs/bench/segment.json
    python bench/segment_throughput.py --model ViT-B-16,EVA02-B-16,ViT-B-16-SigLIP --sizes 224:1 \
        --precisions fp32 --device cpu --out runs/bench/segment_archs.json
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
from clipdense.models.dense import DENSE_MODES, tower_facts  # noqa: E402
from clipdense.tasks.segment import segment_logits  # noqa: E402

DEFAULT_SIZES = "448:32,896:8"
SMOKE_SIZES = "64:2,128:2"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_args(parser)
    parser.add_argument("--model", default=None, help="model names, comma-separated (default ViT-B-16; "
                        "smoke: tiny-vit-t8); random weights")
    parser.add_argument("--sizes", default=None, help=f"SIDE:BATCH,... (default {DEFAULT_SIZES})")
    parser.add_argument("--modes", default=",".join(DENSE_MODES), help="dense modes to time")
    parser.add_argument("--precisions", default=None, help="bf16 (autocast) and/or fp32 (default bf16,fp32)")
    parser.add_argument("--classes", type=int, default=150, help="classes in the text classifier")
    parser.add_argument("--window", type=int, default=None, help="sliding-window side (default: whole image)")
    parser.add_argument("--text-prompts", type=int, default=None,
                        help="prompts encoded in the timed text part (default: --classes; smoke: 8; 0 = skip)")
    args = parser.parse_args()
    args.model = args.model or ("tiny-vit-t8" if args.smoke else "ViT-B-16")
    args.sizes = args.sizes or (SMOKE_SIZES if args.smoke else DEFAULT_SIZES)
    args.precisions = args.precisions or ("fp32" if args.smoke else "bf16,fp32")
    if args.text_prompts is None:
        args.text_prompts = 8 if args.smoke else args.classes
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
    dim = tower_facts(model).output_dim
    classifier = F.normalize(torch.randn(classes, dim, device=device), dim=-1)
    step = segment_step(model, images, classifier, mode, precision, args.window)
    try:
        flops: float | None = common.count_flops(step)
    except AssertionError:  # torch's FlopCounterMode trips on a parameter expanded under no_grad (timm's MAP head)
        flops = None
    common.reset_peak_memory(device)
    clock = common.StepClock(device, warmup, steps, args.config_limit_s)
    common.run_loop(step, clock)
    return common.rate_fields(clock, batch, flops, peak, device)


def measure_text(model: torch.nn.Module, prompts: int, device: torch.device,
                 args: argparse.Namespace) -> dict[str, Any]:
    """encode_text of ``prompts`` random token sequences of the model's context length."""
    steps, warmup = common.steps_and_warmup(args)
    tokens = torch.randint(1, int(model.vocab_size), (prompts, int(model.context_length)), device=device)

    @torch.no_grad()
    def step() -> torch.Tensor:
        return model.encode_text(tokens)
    clock = common.StepClock(device, warmup, steps, args.config_limit_s)
    common.run_loop(step, clock)
    return {"prompts": prompts, "text_ms": 1000 * clock.seconds_per_step,
            "ms_per_prompt": 1000 * clock.seconds_per_step / prompts}


def support_table(rows: list[dict[str, Any]], models: list[str], modes: list[str]) -> str:
    """Architectures x dense modes: 'yes' where a mode ran, its error where it could not."""
    lines = ["| model | " + " | ".join(modes) + " |", "|" + "---|" * (len(modes) + 1)]
    for name in models:
        cells = []
        for mode in modes:
            found = [r for r in rows if r["model"] == name and r["mode"] == mode and "skipped" not in r]
            cells.append("-" if not found else found[0].get("error", "yes"))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


COLUMNS = [("model", "model", ""), ("side", "px", "d"), ("batch", "batch", "d"), ("mode", "mode", ""),
           ("precision", "precision", ""), ("images_per_s", "img/s", ".1f"), ("step_ms", "batch ms", ".1f"),
           ("tflops", "TFLOP/s", ".0f"), ("mfu", "MFU", ".2f"), ("peak_mem_gib", "peak GiB", ".2f")]
TEXT_COLUMNS = [("model", "model", ""), ("prompts", "prompts", "d"), ("text_ms", "text ms", ".1f"),
                ("ms_per_prompt", "ms / prompt", ".2f")]


def main() -> None:
    args = parse_args()
    device, results, peak = common.start_run(args)
    names, modes = args.model.split(","), args.modes.split(",")
    results.extra["text"] = []
    for name in names:
        model = load_model(name, device=device).model.eval()
        for side, batch in size_specs(args.sizes):
            for precision in args.precisions.split(","):
                for mode in modes:
                    row = {"model": name, "side": side, "batch": batch, "mode": mode, "precision": precision,
                           "classes": args.classes, "window": args.window}
                    results.run(row, lambda net=model, s=side, b=batch, m=mode, p=precision: measure(
                        net, s, b, m, p, args.classes, device, args, peak), device)
        if args.text_prompts > 0:
            results.extra["text"].append({"model": name, **measure_text(model, args.text_prompts, device, args)})
            results.write()
        del model
        common.free_memory(device)
    print("\n" + common.summary_line(results.env, peak) + "\n")
    print(common.markdown_table(results.rows, COLUMNS))
    if results.extra["text"]:
        print("\n" + common.markdown_table(results.extra["text"], TEXT_COLUMNS))
    print("\n" + support_table(results.rows, names, modes))


if __name__ == "__main__":
    main()
