"""Arguments and helpers shared by several commands."""
from __future__ import annotations

import argparse
from typing import Any, Sequence

import yaml

from ..errors import ConfigError


def add_model_args(parser: argparse.ArgumentParser, default_model: str = "tiny-vit-s8") -> None:
    """--model / --pretrained / --device, the same on every command that loads a model."""
    parser.add_argument("--model", default=default_model,
                        help="open_clip name, hf-hub:org/repo, built-in tiny name, .safetensors file or run dir "
                             f"(default: {default_model})")
    parser.add_argument("--pretrained", default=None,
                        help="open_clip pretrained tag or a local weights file (.safetensors/.pt/.bin)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")


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
