"""`clipdense distill --method clipself`: dense self-distillation on the one training engine."""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from ..config import build_config
from ..errors import ConfigError
from ..train.config import TrainConfig
from ..train.distill import run_distillation, write_ensemble
from .train import FLAGS, parse_objective_args

METHODS = ("clipself",)
# flag dest -> ClipSelfOptions field
METHOD_FLAGS = ("regions", "dense_mode", "global_guard", "crop_guard", "teacher_cache", "student_size",
                "student_sizes", "teacher_size", "max_split", "max_regions", "box_expand", "fixed_regions")
DISTILL_DEFAULTS = {"model": "tiny-vit-s8", "steps": 300, "batch_size": 16, "lr": 1e-4, "warmup_steps": 20,
                    "weight_decay": 0.1, "checkpoint_every": 100}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("distill", help="CLIPSelf dense self-distillation of a CLIP ViT",
                              description="The teacher is a frozen copy of --model/--pretrained; the student starts "
                                          "from the same weights and only its image tower trains.")
    p.add_argument("--method", choices=METHODS, default="clipself")
    p.add_argument("--data", default=None, help="world folder, image-text CSV or shards (grid); with --regions "
                                                "boxes: a world folder, or an image folder with --boxes")
    p.add_argument("--boxes", default=None, help="COCO instances/proposals JSON for --regions boxes")
    p.add_argument("--model", default=None, help="open_clip name, tiny name, .safetensors or run dir")
    p.add_argument("--pretrained", default=None, help="open_clip tag or weights file")
    p.add_argument("--out", default=None, help="run directory")
    p.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue RUN_DIR exactly")
    p.add_argument("--config", default=None, metavar="FILE.yaml", help="TrainConfig keys as YAML")
    for flag, kind, doc in (("steps", int, "optimiser steps"), ("batch-size", int, "global images per step"),
                            ("lr", float, "peak learning rate"), ("warmup-steps", int, "warmup steps"),
                            ("weight-decay", float, "AdamW weight decay"), ("checkpoint-every", int, "steps"),
                            ("lock-image-blocks", int, "freeze the first N vision blocks"),
                            ("seed", int, "seed"), ("num-workers", int, "decoding processes"),
                            ("prefetch-batches", int, "batches built ahead (default: 2 on CUDA, 0 on CPU)"),
                            ("augment-threads", int, "threads augmenting a batch (default: 8 on CUDA, 0 on CPU)")):
        p.add_argument(f"--{flag}", type=kind, default=None, help=doc)
    p.add_argument("--device", default=None)
    p.add_argument("--precision", default=None, choices=("auto", "fp32", "bf16", "fp16"))
    p.add_argument("--regions", choices=("grid", "boxes"), default=None, help="grid cells (default) or boxes")
    p.add_argument("--dense-mode", default=None, help="student dense mode (default maskclip)")
    p.add_argument("--global-guard", type=float, default=None, help="weight of the image-embedding guard")
    p.add_argument("--crop-guard", type=float, default=None, help="weight of the crop-embedding guard")
    p.add_argument("--teacher-cache", default=None, metavar="DIR", help="cache teacher embeddings here")
    p.add_argument("--student-size", type=int, default=None, help="student input side (default 2x teacher)")
    p.add_argument("--teacher-size", type=int, default=None, help="teacher crop side (default model input)")
    p.add_argument("--max-regions", type=int, default=None, help="regions per image (K, default 20)")
    p.add_argument("--ensemble", type=float, default=None, metavar="RATIO",
                   help="also write RUN/ensemble.safetensors = RATIO*student + (1-RATIO)*teacher (recipe: 0.7)")
    p.add_argument("--objective-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="any other CLIPSelf option (student_sizes=[128,160], max_split=6, ...)")
    p.set_defaults(func=run_distill)


def resolve_distill_config(args: argparse.Namespace) -> TrainConfig:
    """Distill defaults < YAML (or the resumed run's config) < flags; CLIPSelf options in objective_args."""
    overrides = {name: getattr(args, name, None) for name in FLAGS}
    overrides["objective"] = "clipself"
    yaml_path = args.config
    if args.resume and yaml_path is None and (Path(args.resume) / "config.yaml").is_file():
        yaml_path = str(Path(args.resume) / "config.yaml")
    if yaml_path is None:
        overrides = {**DISTILL_DEFAULTS, **{k: v for k, v in overrides.items() if v is not None}}
    config = build_config(TrainConfig, yaml_path, overrides)
    if args.resume and not args.out:
        config.out = args.resume
    method = {name: getattr(args, name, None) for name in METHOD_FLAGS}
    method = {k: v for k, v in method.items() if v is not None}
    if args.boxes:
        method["boxes_file"] = args.boxes
    extra = {**config.objective_args, **method, **parse_objective_args(args.objective_arg)}
    return dataclasses.replace(config, objective_args=extra)


def run_distill(args: argparse.Namespace) -> int:
    config = resolve_distill_config(args)
    if not config.data:
        raise ConfigError("--data is required (a world folder, image-text CSV/shards, or an image folder)")
    result = run_distillation(config)
    losses = ", ".join(f"{k} {v:.4f}" for k, v in result.last_losses.items() if "loss" in k or "guard" in k)
    print(f"distilled {config.model} with clipself for {result.step} steps ({losses}); run dir {result.run_dir}")
    if result.corrupt_samples:
        print(f"skipped {result.corrupt_samples} unreadable sample(s); see corrupt_samples_skipped in metrics.jsonl")
    if args.ensemble is not None:
        print(f"wrote {write_ensemble(config, args.ensemble)}")
    return 0
