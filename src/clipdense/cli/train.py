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
from ..train.config import TrainConfig
from ..train.run import run_training
from .periodic import world_evaluator
from .common import add_config_flags, parse_key_values
from .outputs import check_out_folder

#: the TrainConfig fields every training command takes as flags (--objective is train's own; distill has --method)
FLAGS = tuple(f.name for f in dataclasses.fields(TrainConfig)
              if f.metadata.get("flag", True) and f.name != "objective")


def add_training_flags(p: argparse.ArgumentParser, defaults: Mapping[str, Any] | None = None) -> None:
    """The flags every training command shares (train, distill), generated from TrainConfig's fields (help, range,
    choices) with the command's own ``defaults`` in their help; then --config and --objective-arg."""
    add_config_flags(p, TrainConfig, defaults, skip=("objective",))
    p.add_argument("--config", default=None, metavar="FILE.yaml", help="TrainConfig keys as YAML")
    p.add_argument("--objective-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="an option of the objective (e.g. local_crops=6, regions=boxes); repeatable")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train with any objective: clip | siglip | slip | silc | clipself ... "
                                            "(torchrun for several GPUs)",
                              description="Defaults, then --config YAML (or the run's config.yaml with --resume), "
                                          "then these flags. --batch-size is global (all GPUs x accumulation).")
    objective = next(f for f in dataclasses.fields(TrainConfig) if f.name == "objective")
    p.add_argument("--objective", choices=sorted(OBJECTIVES), default=None,
                   help=f"{objective.metadata['help']} (default: {objective.default})")
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


def check_run_out(config: TrainConfig) -> None:
    """The run folder (--out, or the resumed run) makeable before the engine opens data or loads a model."""
    if config.out:
        check_out_folder(config.out, "--out", "a run folder")


def run_train(args: argparse.Namespace) -> int:
    config = resolve_config(args)
    check_run_out(config)
    result = run_training(config, make_evaluator=world_evaluator(config))
    report("trained", config, result)
    return 0
