"""`clipdense distill --method clipself`: shorthand for `clipdense train --objective clipself` with
distillation defaults, one flag per CLIPSelf option (generated from ``ClipSelfOptions``)."""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from ..errors import ConfigError
from ..objectives.clipself import ClipSelfOptions, write_ensemble
from ..train.config import TrainConfig
from ..train.run import run_training
from .periodic import world_evaluator
from .common import AMOUNT, PIXELS, add_config_flags, bounded
from .outputs import check_beside
from .train import add_training_flags, check_run_out, report, resolve_config

METHODS = {"clipself": ClipSelfOptions}
#: every numeric option is a size, count or weight (none is negative); lists are sizes in pixels
OPTION_TYPES = {int: AMOUNT, float: bounded(float, 0.0, what="a number"), list: PIXELS}
# Distillation's own defaults: the base layer under --config, the resumed run's config and the flags alike.
DISTILL_DEFAULTS = {"model": "tiny-vit-s8", "steps": 300, "batch_size": 16, "lr": 1e-4, "warmup_steps": 20,
                    "weight_decay": 0.1, "checkpoint_every": 100}


def register(subparsers: argparse._SubParsersAction) -> None:
    own = ", ".join(f"{name.replace('_', '-')} {value}" for name, value in DISTILL_DEFAULTS.items())
    p = subparsers.add_parser("distill", help="CLIPSelf dense self-distillation of a CLIP ViT",
                              description="The teacher is a frozen copy of --model/--pretrained; the student starts "
                                          "from the same weights and only its image tower trains. Same engine and "
                                          "flags as `clipdense train --objective clipself`, with distillation "
                                          f"defaults ({own}) under --config and the flags.")
    p.add_argument("--method", choices=sorted(METHODS), default="clipself")
    add_training_flags(p, DISTILL_DEFAULTS)
    p.add_argument("--boxes", default=None, metavar="COCO.json",
                   help="boxes or proposals for --regions boxes, with --data the image folder they refer to "
                        "(same as --data coco:images=DIR,annotations=COCO.json)")
    p.add_argument("--ensemble", type=bounded(float, 0.0, 1.0, what="a ratio"), default=None, metavar="RATIO",
                   help="also write RUN/ensemble.safetensors = RATIO*student + (1-RATIO)*teacher (recipe: 0.7)")
    add_config_flags(p, ClipSelfOptions, dest_prefix="method_", fallback=OPTION_TYPES)
    p.set_defaults(func=run_distill)


def resolve_distill_config(args: argparse.Namespace) -> TrainConfig:
    """DISTILL_DEFAULTS < YAML (or the resumed run's config) < flags; method flags become objective_args."""
    method = {f.name: getattr(args, f"method_{f.name}") for f in dataclasses.fields(METHODS[args.method])}
    args.objective = args.method
    config = resolve_config(args, DISTILL_DEFAULTS, {k: v for k, v in method.items() if v is not None})
    if args.boxes:
        if not config.data:
            raise ConfigError("--boxes needs --data: the image folder the boxes' file_name entries refer to")
        if ":" in config.data.split("/")[0] or config.data.endswith((".yaml", ".yml")):
            raise ConfigError(f"--boxes {args.boxes}: --data {config.data} already describes its annotations; "
                              "pass the image folder as --data, or drop --boxes")
        config = dataclasses.replace(config, data=f"coco:images={config.data},annotations={args.boxes}")
    return config


def run_distill(args: argparse.Namespace) -> int:
    config = resolve_distill_config(args)
    check_run_out(config)
    if args.ensemble is not None:
        run = Path(config.out or config.resume or ".")
        check_beside("--ensemble", args.ensemble, [run / "ensemble.safetensors"])
    result = run_training(config, make_evaluator=world_evaluator(config))
    report("distilled", config, result)
    if args.ensemble is not None:
        print(f"wrote {write_ensemble(config.out, config.model, config.pretrained, args.ensemble)}")
    return 0
