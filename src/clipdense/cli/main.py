"""The `clipdense` command: one module per command group, each with ``register(subparsers)``."""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Sequence

from ..errors import ClipDenseError

# Each module defines register(subparsers) and sets ``func`` (args -> int exit code) on its parsers.
COMMAND_MODULES: tuple[str, ...] = (
    "info",
    "inference",
    "data",
    "eval",
    "train",
    "distill",
    "demo",
    "adapt",
    "detect",
)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every command group registered."""
    parser = argparse.ArgumentParser(
        prog="clipdense",
        description="Dense (region- and pixel-level) features for CLIP-style models.",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__package__}.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: user errors become one line on stderr and exit code 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ClipDenseError as exc:
        if args.debug:
            raise
        print(f"clipdense {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"clipdense {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and closed early: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
