"""The `clipdense` command: one module per command group, each with ``register(subparsers)``."""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import NoReturn, Sequence

from ..errors import ClipDenseError
from ..models.text_cache import use_text_cache

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
    "ground",
    "vqa",
    "serve",
    "depth",
    "generate",
    "export",
    "search",
)


class OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line and exit 2, like every other error of the command (its
    default prints the whole usage block first). Subcommand parsers inherit the class."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every command group registered."""
    parser = OneLineParser(
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
        with use_text_cache(not getattr(args, "no_cache", False)):   # --no-cache (common.add_cache_flag)
            code = int(args.func(args) or 0)
        for message in getattr(args, "pending_warnings", None) or ():
            print(f"clipdense {args.command}: warning: {message}", file=sys.stderr, flush=True)
        return code
    except ClipDenseError as exc:
        if args.debug:
            raise
        return _error(args.command, str(exc))
    except BrokenPipeError:  # output piped into `head` and closed early: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:   # a file or folder the user named cannot be read or written: say which
        if args.debug or exc.filename is None:
            raise
        return _error(args.command, f"{exc.filename}: {exc.strerror or exc}")
    except KeyboardInterrupt:
        print(f"clipdense {args.command}: interrupted", file=sys.stderr)
        return 130


def _error(command: str, message: str) -> int:
    """The one line a user error prints (exit code 2)."""
    text = " ".join(message.split())
    print(f"clipdense {command}: error: {text}", file=sys.stderr, flush=True)
    return 2

if __name__ == "__main__":
    sys.exit(main())
