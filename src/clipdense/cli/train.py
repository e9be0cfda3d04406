"""`clipdense train`: pretrain or continue training a CLIP-style model with one objective."""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

import yaml

from ..config import build_config
from ..errors import ConfigError
from ..objectives import PRETRAINING_OBJECTIVES
from ..train.config import PRECISIONS, TrainConfig
from ..train.run import run_training
from ..train.sources import open_training_source

# CLI flag dest -> TrainConfig field, for every flag that overrides the config.
FLAGS = ("objective", "data", "model", "pretrained", "out", "resume", "steps", "batch_size", "accum_steps", "lr",
         "warmup_steps", "weight_decay", "grad_clip", "precision", "grad_checkpointing", "compile", "ema_decay",
         "lock_image_blocks", "lock_text_blocks", "checkpoint_every", "keep_checkpoints", "log_every",
         "eval_every", "val_data", "on_nonfinite", "seed", "device", "num_workers",
         "prefetch_batches", "augment_threads")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train with clip | siglip | slip | silc (torchrun for several GPUs)",
                              description="Defaults, then --config YAML (or the run's config.yaml with --resume), "
                                          "then these flags. --batch-size is global (all GPUs x accumulation).")
    p.add_argument("--objective", choices=PRETRAINING_OBJECTIVES, default=None, help="training method (default clip)")
    p.add_argument("--data", default=None, help="synthetic world folder, open_clip CSV, or WebDataset shard pattern")
    p.add_argument("--model", default=None, help="open_clip name, built-in tiny name, .safetensors or run dir "
                                                 "(default tiny-vit-t8)")
    p.add_argument("--pretrained", default=None, help="open_clip pretrained tag or a local weights file")
    p.add_argument("--out", default=None, help="run directory (checkpoints, metrics.jsonl, config.yaml)")
    p.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue RUN_DIR exactly from its last checkpoint")
    p.add_argument("--config", default=None, metavar="FILE.yaml", help="TrainConfig keys as YAML")
    p.add_argument("--steps", type=int, default=None, help="optimiser steps (default 1000)")
    p.add_argument("--batch-size", type=int, default=None, help="global images per step (default 64)")
    p.add_argument("--accum-steps", type=int, default=None, help="micro-batches per step (default 1)")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default 1e-3)")
    p.add_argument("--warmup-steps", type=int, default=None, help="linear warmup steps (default 50)")
    p.add_argument("--weight-decay", type=float, default=None, help="AdamW weight decay (default 0.1)")
    p.add_argument("--grad-clip", type=float, default=None, help="max gradient norm, 0 = off (default 1.0)")
    p.add_argument("--precision", choices=PRECISIONS, default=None, help="default auto: bf16 on CUDA, fp32 on CPU")
    p.add_argument("--grad-checkpointing", action="store_const", const=True, default=None)
    p.add_argument("--compile", action="store_const", const=True, default=None, help="torch.compile the objective")
    p.add_argument("--ema-decay", type=float, default=None, help="EMA of weights -> ema.safetensors (0 = off)")
    p.add_argument("--lock-image-blocks", type=int, default=None, help="freeze the first N vision blocks")
    p.add_argument("--lock-text-blocks", type=int, default=None, help="freeze the first N text blocks")
    p.add_argument("--checkpoint-every", type=int, default=None, help="steps between checkpoints (default 500)")
    p.add_argument("--keep-checkpoints", type=int, default=None, help="keep the newest K (default 2)")
    p.add_argument("--log-every", type=int, default=None, help="steps between metrics records (default 10)")
    p.add_argument("--eval-every", type=int, default=None, help="zero-shot+retrieval every N steps (0 = at the end)")
    p.add_argument("--val-data", default=None, help="world folder to evaluate on (default: --data if a world)")
    p.add_argument("--on-nonfinite", choices=("stop", "skip"), default=None, help="NaN/inf loss policy")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--device", default=None, help="cpu, cuda (default: cuda if available; torchrun: this rank's GPU)")
    p.add_argument("--num-workers", type=int, default=None, help="image-decoding processes per rank (default 1)")
    p.add_argument("--prefetch-batches", type=int, default=None,
                   help="batches built ahead on a background thread (default -1: 2 on CUDA, 0 on CPU)")
    p.add_argument("--augment-threads", type=int, default=None,
                   help="threads augmenting each batch (default -1: 8 on CUDA, 0 on CPU)")
    p.add_argument("--objective-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="an option of the objective (e.g. local_crops=6); repeatable")
    p.set_defaults(func=run_train)


def parse_objective_args(items: list[str]) -> dict[str, Any]:
    """KEY=VALUE pairs, values read as YAML scalars/lists (6 -> int, [0.4,1.0] -> list)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--objective-arg {item!r}: expected KEY=VALUE")
        out[key.strip()] = yaml.safe_load(value)
    return out


def resolve_config(args: argparse.Namespace) -> TrainConfig:
    """Defaults < YAML (--config, or RUN/config.yaml when resuming) < flags."""
    overrides = {name: getattr(args, name) for name in FLAGS}
    yaml_path = args.config
    if args.resume and yaml_path is None and (Path(args.resume) / "config.yaml").is_file():
        yaml_path = str(Path(args.resume) / "config.yaml")
    config = build_config(TrainConfig, yaml_path, overrides)
    if args.resume and not args.out:
        config.out = args.resume
    extra = parse_objective_args(args.objective_arg)
    if extra:
        config = dataclasses.replace(config, objective_args={**config.objective_args, **extra})
    return config


def run_train(args: argparse.Namespace) -> int:
    config = resolve_config(args)
    result = run_training(config, open_source=open_training_source, evaluate_on_world=True)
    losses = ", ".join(f"{k} {v:.4f}" for k, v in result.last_losses.items() if k in ("loss", "logit_scale"))
    print(f"trained {config.objective} for {result.step} steps ({losses}); run dir {result.run_dir}")
    if result.corrupt_samples:
        print(f"skipped {result.corrupt_samples} unreadable sample(s); see corrupt_samples_skipped in metrics.jsonl")
    return 0
