"""`clipdense train`: train with any registered objective (pretraining, CLIPSelf, heads) on the one engine."""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any, Mapping

from ..config import build_config
from ..data.skips import SKIP_LOG
from ..errors import ConfigError
from ..objectives import OBJECTIVES
from ..train.config import PRECISIONS, TrainConfig
from ..train.run import run_training
from ..train.sources import open_training_source
from .common import parse_key_values

# (flag, type or action, help) for every TrainConfig field a flag overrides; dest = the field name.
TRAINING_FLAGS: tuple[tuple[str, Any, str], ...] = (
    ("--data", str, "a world folder, an open_clip CSV, WebDataset shards ('shards-{000..009}.tar'), a data YAML, "
                    "or coco:images=DIR,annotations=FILE / semseg:images=DIR,labels=DIR,classes=FILE / "
                    "imagefolder:root=DIR"),
    ("--model", str, "open_clip name, built-in tiny name, .safetensors or run dir (default tiny-vit-t8)"),
    ("--pretrained", str, "open_clip pretrained tag or a local weights file"),
    ("--out", str, "run directory (checkpoints, metrics.jsonl, config.yaml)"),
    ("--steps", int, "optimiser steps (default 1000)"),
    ("--batch-size", int, "global images per step: all GPUs x accumulation (default 64)"),
    ("--accum-steps", int, "micro-batches per step (default 1)"),
    ("--lr", float, "peak learning rate (default 1e-3)"),
    ("--warmup-steps", int, "linear warmup steps (default 50)"),
    ("--weight-decay", float, "AdamW weight decay (default 0.1)"),
    ("--grad-clip", float, "max gradient norm, 0 = off (default 1.0)"),
    ("--grad-checkpointing", "store_true", "recompute activations in backward (less memory)"),
    ("--compile", "store_true", "torch.compile the objective"),
    ("--ema-decay", float, "EMA of weights -> ema.safetensors (0 = off)"),
    ("--lock-image-blocks", int, "freeze the first N vision blocks"),
    ("--lock-text-blocks", int, "freeze the first N text blocks"),
    ("--checkpoint-every", int, "steps between checkpoints (default 500)"),
    ("--keep-checkpoints", int, "keep the newest K (default 2; 0 keeps every one)"),
    ("--log-every", int, "steps between metrics records (default 10)"),
    ("--eval-every", int, "zero-shot+retrieval every N steps (0 = at the end)"),
    ("--val-data", str, "world folder to evaluate on (default: --data if a world)"),
    ("--seed", int, "run seed (data order, augmentation, init)"),
    ("--device", str, "cpu, cuda (default: cuda if available; torchrun: this rank's GPU)"),
    ("--num-workers", int, "image-decoding processes per rank (default 1)"),
    ("--prefetch-batches", int, "batches built ahead on a background thread (default -1: 2 on CUDA, 0 on CPU)"),
    ("--augment-threads", int, "threads augmenting each batch (default -1: 8 on CUDA, 0 on CPU)"),
)
FLAGS = tuple(flag[2:].replace("-", "_") for flag, _, _ in TRAINING_FLAGS) + ("precision", "on_nonfinite", "resume")


def add_training_flags(p: argparse.ArgumentParser) -> None:
    """The flags every training command shares (train, distill): TrainConfig overrides, --config, --resume."""
    for flag, kind, doc in TRAINING_FLAGS:
        if kind == "store_true":
            p.add_argument(flag, action="store_const", const=True, default=None, help=doc)
        else:
            p.add_argument(flag, type=kind, default=None, help=doc)
    p.add_argument("--precision", choices=PRECISIONS, default=None, help="default auto: bf16 on CUDA, fp32 on CPU")
    p.add_argument("--on-nonfinite", choices=("stop", "skip"), default=None, help="NaN/inf loss policy")
    p.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue RUN_DIR exactly from its last checkpoint")
    p.add_argument("--config", default=None, metavar="FILE.yaml", help="TrainConfig keys as YAML")
    p.add_argument("--objective-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="an option of the objective (e.g. local_crops=6, regions=boxes); repeatable")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train with any objective: clip | siglip | slip | silc | clipself ... "
                                            "(torchrun for several GPUs)",
                              description="Defaults, then --config YAML (or the run's config.yaml with --resume), "
                                          "then these flags. --batch-size is global (all GPUs x accumulation).")
    p.add_argument("--objective", choices=sorted(OBJECTIVES), default=None, help="training method (default clip)")
    add_training_flags(p)
    p.set_defaults(func=run_train)


def resolve_config(args: argparse.Namespace, defaults: Mapping[str, Any] | None = None,
                   overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """Defaults (``defaults``: a command's own) < YAML (--config, or RUN/config.yaml when resuming) < flags.

    ``overrides`` are objective options a command sets from its own flags; --objective-arg wins over them.
    """
    flags = {name: getattr(args, name, None) for name in FLAGS}
    flags["objective"] = getattr(args, "objective", None)
    yaml_path = args.config
    if args.resume and yaml_path is None:
        yaml_path = _resumed_config(Path(args.resume), flags)
    config = build_config(TrainConfig, yaml_path, flags, defaults=defaults)
    if args.resume and not args.out:
        config.out = args.resume
    extra = {**(overrides or {}), **parse_key_values(args.objective_arg, "--objective-arg")}
    if extra:
        config = dataclasses.replace(config, objective_args={**config.objective_args, **extra})
    return config


def _resumed_config(run: Path, flags: Mapping[str, Any]) -> str | None:
    """RUN/config.yaml of the run to continue (None when it is gone but --data is given again); a missing folder
    or config is named, not reported as '--data is required'."""
    if not run.is_dir():
        raise ConfigError(f"--resume {run}: " + ("is a file, expected a run folder" if run.exists() else
                                                 "no such run folder"))
    saved = run / "config.yaml"
    if saved.is_file():
        return str(saved)
    if flags.get("data"):
        return None
    raise ConfigError(f"--resume {run}: {saved} is missing, so the run's settings are unknown; give them again "
                      "(--data and the flags it ran with, or --config FILE.yaml)")


def report(verb: str, config: TrainConfig, result: Any) -> None:
    """The closing lines of a training command."""
    losses = ", ".join(f"{k} {v:.4f}" for k, v in result.last_losses.items()
                       if k in ("loss", "logit_scale") or "loss" in k or "guard" in k)
    print(f"{verb} {config.model} with {config.objective} for {result.step} steps ({losses}); "
          f"run dir {result.run_dir}")
    if result.corrupt_samples:
        print(f"skipped {result.corrupt_samples} unreadable sample(s); the files and reasons are in "
              f"{Path(result.run_dir) / SKIP_LOG}")


def run_train(args: argparse.Namespace) -> int:
    config = resolve_config(args)
    result = run_training(config, open_source=open_training_source, evaluate_on_world=True)
    report("trained", config, result)
    return 0
