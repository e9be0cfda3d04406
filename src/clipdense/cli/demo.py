"""`clipdense demo`: the embedded default, end to end, with a report."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..config import build_config
from ..demo import DemoConfig, run_demo
from ..demo.config import FLAGGED
from ..demo.families import FAMILY_DEMOS, family_demo
from ..errors import ConfigError
from .common import DEVICE, STEPS
from .outputs import check_out_folder


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="synthetic world -> pretrain -> CLIPSelf -> evaluation -> report.md",
                              description="Under 10 minutes on 2 CPU cores; --quick in about one. With a FAMILY name, "
                                          "that family's own short demo (under 3 minutes each).")
    p.add_argument("family", nargs="?", default=None, metavar="FAMILY",
                   help=f"one family's demo: {', '.join(sorted(FAMILY_DEMOS)) or 'none registered yet'}")
    p.add_argument("--out", default=None, help="output folder (default runs/demo)")
    p.add_argument("--quick", action="store_const", const=True, default=None, help="the 1-minute version (CI)")
    p.add_argument("--model", default=None, help="architecture (default tiny-vit-t8)")
    p.add_argument("--pretrained", default=None,
                   help="weights to distil (tag, file or run dir; default: the shipped 'synthworld' weights)")
    p.add_argument("--from-scratch", action="store_true",
                   help="pretrain a tiny CLIP here first instead of starting from the shipped weights")
    p.add_argument("--pretrain-steps", type=STEPS, default=None)
    p.add_argument("--distill-steps", type=STEPS, default=None)
    p.add_argument("--device", type=DEVICE, default=None)
    p.add_argument("--config", default=None, metavar="FILE.yaml", help="DemoConfig keys as YAML")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.family is not None:
        return run_family(args)
    flags = ("quick",) + FLAGGED   # the report's Command line names the same settings
    config = build_config(DemoConfig, args.config, {name: getattr(args, name) for name in flags})
    check_out_folder(config.out, "--out", "a folder for the demo")
    if args.from_scratch:
        config.pretrained = None
    run_demo(config)
    return 0


def run_family(args: argparse.Namespace) -> int:
    """``clipdense demo FAMILY [--out DIR]``: the main demo's other flags do not apply and are refused."""
    demo = family_demo(args.family)
    given = [f"--{name.replace('_', '-')}" for name in ("quick", "model", "pretrained", "pretrain_steps",
                                                         "distill_steps", "config")
             if getattr(args, name) is not None] + (["--from-scratch"] if args.from_scratch else [])
    if given:
        raise ConfigError(f"{' '.join(given)}: a main-demo flag; `clipdense demo {args.family}` takes --out only")
    out = Path(args.out or f"runs/demo-{args.family}")
    check_out_folder(out, "--out", "a folder for the demo")
    print(f"report: {demo(out, print)}")
    return 0
