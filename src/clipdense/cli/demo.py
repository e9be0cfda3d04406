"""`clipdense demo`: the embedded default, end to end, with a report."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..config import build_config
from ..demo import DemoConfig, run_demo
from ..demo.config import FLAGGED
from ..errors import ConfigError
from .common import STEPS


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="synthetic world -> pretrain -> CLIPSelf -> evaluation -> report.md",
                              description="Under 10 minutes on 2 CPU cores; --quick in about one.")
    p.add_argument("--out", default=None, help="output folder (default runs/demo)")
    p.add_argument("--quick", action="store_const", const=True, default=None, help="the 1-minute version (CI)")
    p.add_argument("--model", default=None, help="architecture (default tiny-vit-t8)")
    p.add_argument("--pretrained", default=None,
                   help="weights to distil (tag, file or run dir; default: the shipped 'synthworld' weights)")
    p.add_argument("--from-scratch", action="store_true",
                   help="pretrain a tiny CLIP here first instead of starting from the shipped weights")
    p.add_argument("--pretrain-steps", type=STEPS, default=None)
    p.add_argument("--distill-steps", type=STEPS, default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--config", default=None, metavar="FILE.yaml", help="DemoConfig keys as YAML")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    flags = ("quick",) + FLAGGED   # the report's Command line names the same settings
    config = build_config(DemoConfig, args.config, {name: getattr(args, name) for name in flags})
    if Path(config.out).exists() and not Path(config.out).is_dir():
        raise ConfigError(f"--out {config.out}: is a file, expected a folder for the demo")
    if args.from_scratch:
        config.pretrained = None
    run_demo(config)
    return 0
