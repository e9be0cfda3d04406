"""Arguments and helpers shared by several commands."""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import types
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, Union, get_args, get_origin, get_type_hints

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
    parser.add_argument("--device", type=DEVICE, default=None,
                        help="cpu, cuda, cuda:1 ... (default: cuda if available)")


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
    parse.bounds = (kind, low, high, low_open)   # type: ignore[attr-defined]  # read by the generated flag test
    return parse


def device_name(text: str) -> str:
    """An argparse ``type`` for --device: a name torch can parse (cpu, cuda, cuda:1, mps), refused in one line
    before anything is loaded. Whether the device exists is checked when the model moves there."""
    import torch

    try:
        torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected a device such as cpu, cuda, cuda:1 or mps, got {text!r}") from None
    return text


device_name.bad_example = "no-such-device"   # type: ignore[attr-defined]  # read by the generated flag test
DEVICE = device_name

#: the argparse types the commands share
PIXELS = bounded(int, 1, what="a size in pixels")
COUNT = bounded(int, 1, what="a count")
STEPS = bounded(int, 1, what="a step count")
PROBABILITY = bounded(float, 0.0, 1.0, what="a probability")
POSITIVE = bounded(float, 0.0, what="a number", low_open=True)
SEED = bounded(int, 0, what="a seed")
AMOUNT = bounded(int, 0, what="a count")
PORT = bounded(int, 1, 65535, what="a port")
SECONDS = bounded(float, 0.0, what="a duration in seconds", low_open=True)


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
    """An output file path: not a folder, no file among its ancestors, writable, with one of ``suffixes`` when
    given (``cli.outputs`` checks the folders and the files written beside it)."""
    from .outputs import blocker, check_beside

    out = Path(path)
    if out.is_dir():
        raise ConfigError(f"{flag} {out}: is a folder, expected a file path")
    why = blocker(out)
    if why:
        raise ConfigError(f"{flag} {out}: {why}")
    if out.exists():
        check_beside(flag, out, [out])   # an existing file this user cannot replace
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


class CheckedValue(argparse.Action):
    """A flag's value parsed as its field's type and checked against the field's declared range or choices: a bad
    one is one line naming the flag and what was expected (exit 2), the message YAML values get from validate."""

    def __init__(self, option_strings: Sequence[str], dest: str, kind: type = str,
                 check: Callable[[Any], bool] = lambda value: True, expected: str = "", **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.kind, self.check, self.expected = kind, check, expected

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        try:
            value = self.kind(values)
        except ValueError:
            parser.error(f"{option_string} {values}: invalid {self.kind.__name__} value, expected {self.expected}")
        if not self.check(value):
            parser.error(f"{option_string} {values}: expected {self.expected}")
        setattr(namespace, self.dest, value)


def _scalar(hint: Any) -> Any:
    """``X`` of ``X | None``."""
    if get_origin(hint) in (Union, types.UnionType):
        return next(arg for arg in get_args(hint) if arg is not type(None))
    return hint


def _shown(value: Any) -> str:
    return " ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def add_config_flags(parser: argparse.ArgumentParser, cls: type, defaults: Mapping[str, Any] | None = None,
                     dest_prefix: str = "", skip: Sequence[str] = (),
                     fallback: Mapping[Any, Callable[[str], Any]] | None = None) -> tuple[str, ...]:
    """One flag per field of the config dataclass ``cls`` (``--field-name``), generated from its declaration:
    ``help``, ``choices``, ``metavar`` and the ``range`` (with its ``expected`` text) in the field's metadata.
    The help names the command's own default (``defaults`` over the field's); the parsed value stays None
    when the flag is absent, so YAML can set it. Numeric fields without a range take ``fallback[type]``.
    Returns the names of the fields given a flag."""
    hints, defaults, named = get_type_hints(cls), dict(defaults or {}), []
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if f.name in skip or "help" not in meta or not meta.get("flag", True):
            continue
        default = defaults.get(f.name, f.default if f.default is not dataclasses.MISSING else f.default_factory())
        shown = f" (default: {_shown(default)})" if default not in (None, "", [], ()) else ""
        note = f"; {meta['note']}" if meta.get("note") else ""
        kwargs: dict[str, Any] = {"dest": dest_prefix + f.name, "default": None, "help": meta["help"] + note + shown,
                                  "metavar": meta.get("metavar") or f.name.upper()}
        hint = _scalar(hints[f.name])
        if hint is bool:
            kwargs.update(action=argparse.BooleanOptionalAction)   # --compile / --no-compile
            kwargs.pop("metavar")
        elif meta.get("choices") is not None:
            kwargs.pop("metavar")
            kwargs.update(choices=meta["choices"])
        elif meta.get("range") is not None:
            kwargs.update(action=CheckedValue, kind=hint, check=meta["range"].__contains__, expected=meta["expected"])
        elif get_origin(hint) is list:
            kwargs.update(type=(fallback or {}).get(list), nargs="+")
        else:
            kwargs.update(type=(fallback or {}).get(hint, hint))
        parser.add_argument("--" + f.name.replace("_", "-"), **kwargs)
        named.append(f.name)
    return tuple(named)
