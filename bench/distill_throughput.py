"""CLIPSelf distillation step throughput (issue 7): our engine vs the published recipe's step, same run.

ViT-B-16 with a 1024 px student and 20 teacher crops of 224 px per image, and ViT-L-14-336 at
896 / 336 px. "ours" is ``ClipSelfObjective`` in the real ``Trainer.fit`` loop on a device-resident
random batch (5 x 4 grid cells, all valid). The baseline is the published recipe's step written
plainly on open_clip: the teacher encodes all crops of the batch in one pass, the student's dense
map comes from a maskclip-style last block (value path, residual and MLP kept), RoIAlign 1x1,
1 - cosine, eager bf16 autocast, AdamW on the image tower, 2 images per step.

    python bench/distill_throughput.py --out runs/bench/distill.json
    python bench/distill_throughput.py --smoke --device cpu --out /tmp/distill_smoke.json
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import open_clip
import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (bench/ is a folder of scripts, not a package)

from clipdense.models import load_model  # noqa: E402
from clipdense.models.registry import register_builtin_configs  # noqa: E402
from clipdense.objectives import build_objective  # noqa: E402
from clipdense.train.config import TrainConfig  # noqa: E402
from clipdense.train.engine import Trainer  # noqa: E402

DEFAULT_MODELS = "ViT-B-16:1024:224,ViT-L-14-336:896:336"
SMOKE_MODELS = "tiny-vit-t8:128:64"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_args(parser)
    parser.add_argument("--models", default=None, help=f"NAME:STUDENT:TEACHER,... (default {DEFAULT_MODELS})")
    parser.add_argument("--crops", type=int, default=None, help="regions per image (default 20; smoke 4)")
    parser.add_argument("--batches", default=None, help="our images per step, comma-separated (default 2,8)")
    parser.add_argument("--baseline-batch", type=int, default=2, help="the recipe's images per GPU per step")
    parser.add_argument("--baseline-precision", default="bf16", choices=("bf16", "fp16"),
                        help="autocast dtype of the recipe's step (fp16 adds its GradScaler)")
    args = parser.parse_args()
    args.models = args.models or (SMOKE_MODELS if args.smoke else DEFAULT_MODELS)
    args.crops = args.crops or (4 if args.smoke else 20)
    args.batches = [int(b) for b in (args.batches or ("2" if args.smoke else "2,8")).split(",")]
    return args


def model_specs(text: str) -> list[tuple[str, int, int]]:
    """'ViT-B-16:1024:224,...' -> [(name, student side, teacher side), ...]."""
    specs = []
    for part in text.split(","):
        name, student, teacher = part.strip().split(":")
        specs.append((name, int(student), int(teacher)))
    return specs


def grid_cells(count: int) -> torch.Tensor:
    """``count`` normalised boxes: the cells of the most square grid with that many cells."""
    cols = next(c for c in range(int(count ** 0.5), 0, -1) if count % c == 0)
    rows = count // cols
    xs, ys = torch.linspace(0, 1, cols + 1), torch.linspace(0, 1, rows + 1)
    return torch.tensor([[xs[i], ys[j], xs[i + 1], ys[j + 1]] for j in range(rows) for i in range(cols)])


def random_batch(batch: int, student: int, teacher: int, crops: int, device: torch.device) -> dict[str, torch.Tensor]:
    """The batch ClipSelfTransform makes (every region valid), with random pixels."""
    boxes = grid_cells(crops)
    return {"image": torch.randn(batch, 3, student, student, device=device),
            "global": torch.randn(batch, 3, teacher, teacher, device=device),
            "crops": torch.randn(batch, crops, 3, teacher, teacher, device=device),
            "boxes": boxes.expand(batch, -1, -1).contiguous().to(device),
            "valid": torch.ones(batch, crops, dtype=torch.bool, device=device),
            "keys": torch.arange(batch * (crops + 1), device=device).view(batch, crops + 1)}


def measure_ours(name: str, student: int, teacher: int, batch: int, device: torch.device,
                 args: argparse.Namespace, peak: float) -> dict[str, Any]:
    """ClipSelfObjective in ``Trainer.fit``: FLOPs of one engine step, then steps timed by a hook."""
    steps, warmup = common.steps_and_warmup(args)
    clock = common.StepClock(device, warmup, steps, args.config_limit_s)
    bundle = load_model(name, device="cpu")
    bundle.model.train()
    options = {"student_size": student, "teacher_size": teacher, "max_regions": args.crops}
    objective = build_objective("clipself", bundle, options, total_steps=10**9)
    config = TrainConfig(objective="clipself", model=name, steps=10**9, batch_size=batch, lr=1e-5,
                         weight_decay=0.1, warmup_steps=100, precision="bf16", checkpoint_every=10**9,
                         log_every=10, device=str(device), objective_args=options)
    data = random_batch(batch, student, teacher, args.crops, device)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(config, objective, common.repeat_batch(data), run_dir, bundle.name, device=device,
                          hooks=[lambda step, tr: clock.tick()])
        flops = common.count_flops(lambda: trainer._accumulate_gradients(iter(trainer.batches)))
        common.run_fit(trainer, clock, device)
    return common.rate_fields(clock, batch, flops, peak, device)


def maskclip_dense(visual: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The recipe's student dense map (B, D, h, w): all blocks but the last as usual, then the
    last block with attention replaced by its value path (residual and MLP kept)."""
    x = visual.conv1(images)
    batch, width, h, w = x.shape
    x = x.flatten(2).transpose(1, 2)
    cls = visual.class_embedding.view(1, 1, -1).expand(batch, 1, width).to(x.dtype)
    x = torch.cat([cls, x], dim=1)
    pos = visual.positional_embedding
    side = int((pos.shape[0] - 1) ** 0.5)
    grid = pos[1:].reshape(1, side, side, width).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False)
    x = x + torch.cat([pos[:1], grid.permute(0, 2, 3, 1).reshape(h * w, width)]).to(x.dtype)
    x = visual.ln_pre(x)
    blocks = visual.transformer.resblocks
    for block in blocks[:-1]:
        x = block(x)
    last = blocks[-1]
    value = F.linear(last.ln_1(x), last.attn.in_proj_weight[2 * width:], last.attn.in_proj_bias[2 * width:])
    x = x + last.ls_1(last.attn.out_proj(value))
    x = x + last.ls_2(last.mlp(last.ln_2(x)))
    x = visual.ln_post(x[:, 1:]) @ visual.proj
    return x.transpose(1, 2).reshape(batch, -1, h, w)


def recipe_step(name: str, data: dict[str, torch.Tensor], device: torch.device, precision: str
                ) -> Callable[[], None]:
    """One step of the published CLIPSelf recipe, plainly on open_clip (student image tower trains)."""
    register_builtin_configs()
    student = open_clip.create_model(name, device=device)
    teacher = open_clip.create_model(name, device=device)
    teacher.load_state_dict(student.state_dict())
    teacher.eval().requires_grad_(False)
    student.train().requires_grad_(False)
    student.visual.requires_grad_(True)
    optimizer = torch.optim.AdamW(student.visual.parameters(), lr=1e-5, weight_decay=0.1)
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    images, crops = data["image"], data["crops"].flatten(0, 1)
    side = images.shape[-1]
    boxes = [b * side for b in data["boxes"]]

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype):
            with torch.no_grad():
                target = F.normalize(teacher.encode_image(crops), dim=-1)
            dense = maskclip_dense(student.visual, images)
            rois = roi_align(dense, boxes, (1, 1), dense.shape[-1] / side, -1, True).flatten(1)
            loss = 1.0 - (F.normalize(rois, dim=-1) * target).sum(-1).mean()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
    return step


def measure_recipe(name: str, student: int, teacher: int, device: torch.device, args: argparse.Namespace,
                   peak: float) -> dict[str, Any]:
    steps, warmup = common.steps_and_warmup(args)
    data = random_batch(args.baseline_batch, student, teacher, args.crops, device)
    step = recipe_step(name, data, device, args.baseline_precision)
    flops = common.count_flops(step)
    common.reset_peak_memory(device)
    clock = common.StepClock(device, warmup, steps, args.config_limit_s)
    common.run_loop(step, clock)
    return common.rate_fields(clock, args.baseline_batch, flops, peak, device)


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """ours / recipe images/s for the same model."""
    for row in rows:
        base = [r for r in rows if r["model"] == row["model"] and r["variant"] == "recipe"]
        if row["variant"] == "ours" and "images_per_s" in row and base and "images_per_s" in base[0]:
            row["vs_recipe"] = row["images_per_s"] / base[0]["images_per_s"]


COLUMNS = [("model", "model", ""), ("student", "student px", "d"), ("teacher", "teacher px", "d"),
           ("crops", "crops", "d"), ("variant", "step", ""), ("batch", "batch", "d"),
           ("images_per_s", "img/s", ".1f"), ("step_ms", "step ms", ".0f"), ("tflop_per_step", "TFLOP/step", ".2f"),
           ("tflops", "TFLOP/s", ".0f"), ("mfu", "MFU", ".2f"), ("peak_mem_gib", "peak GiB", ".1f"),
           ("vs_recipe", "x recipe", ".2f")]


def main() -> None:
    args = parse_args()
    device, results, peak = common.start_run(args)
    for name, student, teacher in model_specs(args.models):
        base = {"model": name, "student": student, "teacher": teacher, "crops": args.crops}
        results.run({**base, "variant": "recipe", "batch": args.baseline_batch,
                     "precision": args.baseline_precision},
                    lambda: measure_recipe(name, student, teacher, device, args, peak), device)
        for batch in args.batches:
            results.run({**base, "variant": "ours", "batch": batch, "precision": "bf16"},
                        lambda b=batch: measure_ours(name, student, teacher, b, device, args, peak), device)
    add_ratios(results.rows)
    results.write()
    print("\n" + common.summary_line(results.env, peak) + "\n")
    print(common.markdown_table(results.rows, COLUMNS))


if __name__ == "__main__":
    main()
