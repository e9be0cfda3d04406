"""Arguments and helpers shared by several commands."""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import yaml

from ..errors import ConfigError

#: what a command that loads a model uses when --model is not given: the weights that ship with clipdense
DEFAULT_MODEL, DEFAULT_PRETRAINED = "tiny-vit-t8", "synthworld"


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """--model / --pretrained / --device, the same on every command that loads a model."""
    parser.add_argument("--model", default=None,
                        help="open_clip name, hf-hub:org/repo, built-in tiny name, .safetensors file or run dir "
                             f"(default: the shipped {DEFAULT_MODEL} with pretrained {DEFAULT_PRETRAINED})")
    parser.add_argument("--pretrained", default=None,
                        help="open_clip pretrained tag or a local weights file (.safetensors/.pt/.bin); without it "
                             "an architecture name has random weights")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")


def add_cache_flag(parser: argparse.ArgumentParser) -> None:
    """--no-cache on a command that builds text classifiers (``main`` applies it around the command)."""
    parser.add_argument("--no-cache", action="store_true",
                        help="compute class text embeddings afresh: neither read nor write the on-disk "
                             "text-classifier cache ($XDG_CACHE_HOME/clipdense/text)")


def model_choice(args: argparse.Namespace) -> tuple[str, str | None]:
    """(model spec, pretrained) from --model/--pretrained: no --model means the shipped weights."""
    if args.model is None:
        return DEFAULT_MODEL, args.pretrained or DEFAULT_PRETRAINED
    return args.model, args.pretrained


def load_cli_model(args: argparse.Namespace) -> Any:
    """The Bundle --model/--pretrained/--device name; a model with random weights says so on stderr."""
    from ..models import load_model
    from ..models.weights import is_random_init

    model, pretrained = model_choice(args)
    bundle = load_model(model, pretrained, args.device)
    if is_random_init(model, pretrained):
        warn_at_end(args, f"{model} has random weights (no --pretrained): what it printed means nothing; drop "
                          f"--model for the shipped {DEFAULT_MODEL} weights, or pass --pretrained TAG|FILE")
    return bundle


def warn(args: argparse.Namespace, message: str) -> None:
    """One warning line on stderr."""
    print(f"clipdense {getattr(args, 'command', '')}: warning: {message}", file=sys.stderr, flush=True)


def warn_at_end(args: argparse.Namespace, message: str) -> None:
    """A warning the command prints when it ends well (``main``), so a failing command still prints one line."""
    pending = getattr(args, "pending_warnings", None)
    if pending is None:
        pending = args.pending_warnings = []
    pending.append(message)


def bounded(kind: type, low: float | None = None, high: float | None = None, what: str = "a value",
            low_open: bool = False) -> Callable[[str], Any]:
    """An argparse ``type`` that parses ``kind`` and refuses values outside [low, high] ((low, high] with
    ``low_open``) and NaN/inf, so a bad number is one line naming the flag before anything is loaded."""
    limits = " and ".join(part for part in (f"{'>' if low_open else '>='} {low}" if low is not None else "",
                                            f"<= {high}" if high is not None else "") if part)

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what} ({kind.__name__}), got {text!r}") from None
        too_low = low is not None and (value <= low if low_open else value < low)
        if (isinstance(value, float) and not math.isfinite(value)) or too_low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected {what} {limits}, got {text}")
        return value
    parse.__name__ = kind.__name__   # argparse names the type in its own messages
    return parse


#: the argparse types the commands share
PIXELS = bounded(int, 1, what="a size in pixels")
COUNT = bounded(int, 1, what="a count")
STEPS = bounded(int, 1, what="a step count")
PROBABILITY = bounded(float, 0.0, 1.0, what="a probability")
POSITIVE = bounded(float, 0.0, what="a number", low_open=True)
SEED = bounded(int, 0, what="a seed")
AMOUNT = bounded(int, 0, what="a count")


def check_templates(text: str, flag: str = "--templates") -> str:
    """A prompt set name or one template with exactly one '{}' for the class name (checked by filling it)."""
    from ..models.text import resolve_templates

    try:
        for fill in resolve_templates(text):
            fill("class")
    except ConfigError as exc:
        raise ConfigError(f"{flag} {text!r}: {str(exc).partition(': ')[2] or exc}") from None
    except (IndexError, KeyError, ValueError):
        raise ConfigError(f"{flag} {text!r}: expected a prompt set or a template with exactly one '{{}}' for the "
                          "class name") from None
    return text


def check_folder(path: str, flag: str) -> Path:
    """An input folder that must exist (an ImageFolder root, a run dir)."""
    folder = Path(path)
    if not folder.is_dir():
        raise ConfigError(f"{flag} {folder}: " + ("is a file, expected a folder" if folder.exists() else
                                                  "no such folder"))
    return folder


def check_out_file(path: str, flag: str = "--out", suffixes: Sequence[str] = ()) -> Path:
    """An output file path: not a folder, its parent not a file, with one of ``suffixes`` when given."""
    out = Path(path)
    if out.is_dir():
        raise ConfigError(f"{flag} {out}: is a folder, expected a file path")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"{flag} {out}: {parent} is a file, not a folder")
            break
    if suffixes and out.suffix.lower() not in suffixes:
        raise ConfigError(f"{flag} {out}: expected a file ending in {' or '.join(suffixes)}")
    return out


def parse_class_list(text: str, flag: str = "--classes") -> list[str]:
    """Split 'a,b,c' into names; an empty list is a user error."""
    if text is None:
        raise ConfigError(f"{flag} is required: a comma-separated list of class names")
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise ConfigError(f"{flag}: expected a comma-separated list of class names, got {text!r}")
    if len(set(names)) != len(names):
        raise ConfigError(f"{flag}: class names must be unique, got {names}")
    return names


def parse_key_values(items: Sequence[str], flag: str) -> dict[str, Any]:
    """Repeated KEY=VALUE flags as a dict, values read as YAML scalars/lists (6 -> int, true -> bool,
    [0.4,1.0] -> list, middle -> str). The one parser for --objective-arg, --option and friends."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag} {item!r}: expected KEY=VALUE")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ConfigError(f"{flag} {item!r}: the value is not a YAML scalar or list") from None
    return out
