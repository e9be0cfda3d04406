"""Options declared once, as dataclass fields: the common evaluation settings and each task's own options.

A field made by ``option(...)`` carries its help, its bounds or choices, and (for flags users already know)
the command-line flag that sets it. ``build_options`` is the one place values from Python, ``--task-arg`` or
a flag are checked against that declaration; every error is one line naming how the user wrote the value.
"""
from __future__ import annotations

import dataclasses
import math
import types
from typing import Any, Callable, Mapping, Sequence, TypeVar, Union, get_args, get_origin, get_type_hints

from ..errors import ConfigError

T = TypeVar("T")
Choices = Union[Sequence[str], Callable[[], Sequence[str]]]


def option(default: Any, help: str, *, flag: str | None = None, low: float | None = None,
           high: float | None = None, what: str = "", choices: Choices | None = None,
           requires: str | None = None) -> Any:
    """A dataclass field declaring one option.

    Args:
        help: one line for ``--help`` (what it changes and why one would set it).
        flag: the command-line flag that sets it (None: only ``--task-arg`` / the Python call).
        low / high / what: bounds of a number, and what the number is ("a size in pixels").
        choices: allowed strings (or a function returning them: a registry's names).
        requires: another field that must be set for this one to mean anything.
    """
    meta = {"help": help, "flag": flag, "low": low, "high": high, "what": what, "choices": choices,
            "requires": requires}
    if isinstance(default, (list, dict, set)):
        raise TypeError("option defaults are immutable (use a tuple)")
    return dataclasses.field(default=default, metadata=meta)


def choices_of(field: dataclasses.Field) -> tuple[str, ...] | None:
    """The allowed strings of ``field`` now (a registry may have grown since the class was declared)."""
    found = field.metadata.get("choices")
    return tuple(found() if callable(found) else found) if found is not None else None


def _base(hint: Any) -> tuple[Any, bool]:
    """(the type without ``| None``, whether None is allowed)."""
    if get_origin(hint) in (Union, types.UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        return (args[0] if len(args) == 1 else hint), len(args) < len(get_args(hint))
    return hint, False


def type_text(hint: Any) -> str:
    """A field's type as help text: 'int or none', 'comma list'."""
    base, optional = _base(hint)
    name = "comma list" if get_origin(base) is tuple else getattr(base, "__name__", str(base))
    return f"{name} or none" if optional else name


def _number(label: str, value: Any, kind: type, meta: Mapping[str, Any]) -> Any:
    what = meta.get("what") or f"a {kind.__name__}"
    try:
        if isinstance(value, bool) or (kind is int and isinstance(value, float)):
            raise ValueError
        number = kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{label} {value!r}: expected {what} ({kind.__name__})") from None
    low, high = meta.get("low"), meta.get("high")
    if (isinstance(number, float) and not math.isfinite(number)) or (low is not None and number < low) or \
            (high is not None and number > high):
        limits = " and ".join(p for p in (f">= {low}" if low is not None else "",
                                          f"<= {high}" if high is not None else "") if p)
        raise ConfigError(f"{label} {value}: expected {what} {limits}".rstrip())
    return number


def _names(label: str, value: Any, allowed: tuple[str, ...] | None, many: bool) -> Any:
    """A string (or, with ``many``, a comma list / sequence of strings) among ``allowed``."""
    items = [v.strip() for v in value.split(",")] if isinstance(value, str) and many else \
        list(value) if many and isinstance(value, (list, tuple)) else [value]
    items = [v for v in items if v != ""] if many else items
    bad = [v for v in items if not isinstance(v, str) or (allowed is not None and v not in allowed)]
    if bad or not items:
        expected = (("some of " if many else "one of ") + ", ".join(allowed)) if allowed is not None else \
            ("a comma list of names" if many else "a string")
        raise ConfigError(f"{label} {value!r}: " + (f"unknown {bad}, " if bad else "") + f"expected {expected}")
    return tuple(dict.fromkeys(items)) if many else items[0]


def coerce_value(label: str, value: Any, hint: Any, field: dataclasses.Field) -> Any:
    """``value`` (from Python, YAML or a raw flag string) as the field's type, checked against its declaration."""
    base, optional = _base(hint)
    if value is None or (optional and isinstance(value, str) and value.lower() in ("none", "null", "")):
        if optional:
            return None
        raise ConfigError(f"{label}: a value is required ({type_text(hint)})")
    if base is bool:
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return value.lower() in ("1", "true", "yes", "on")
        if not isinstance(value, bool):
            raise ConfigError(f"{label} {value!r}: expected true or false")
        return value
    if base in (int, float):
        return _number(label, value, base, field.metadata)
    if get_origin(base) is tuple:
        return _names(label, value, choices_of(field), many=True)
    return _names(label, value, choices_of(field), many=False)


def build_options(cls: type[T], values: Mapping[str, Any] | None, label: Callable[[str], str]) -> T:
    """``cls`` from its defaults and ``values``, each value checked as its field declares.

    ``label(key)`` is how the user wrote the key (``--window``, ``--task-arg segmentation.window``), so an
    error names it; an unknown key is refused naming the known ones.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = get_type_hints(cls)
    unknown = sorted(set(values or {}) - set(fields))
    if unknown:
        known = ", ".join(fields) or "none"
        raise ConfigError(f"{label(unknown[0])}: unknown option, expected one of: {known}")
    given = {k: coerce_value(label(k), v, hints[k], fields[k]) for k, v in (values or {}).items()}
    for key, value in given.items():
        needed = fields[key].metadata.get("requires")
        if needed and value is not None and given.get(needed, getattr(cls, needed, None)) is None:
            raise ConfigError(f"{label(key)} {value}: only used with {label(needed)}")
    return cls(**given)


def describe(cls: type, prefix: str = "") -> list[tuple[str, str]]:
    """(name, 'type, default X: help') per field of ``cls``, for help texts."""
    hints = get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else None
        shown = ",".join(default) if isinstance(default, tuple) else default
        out.append((prefix + f.name, f"{type_text(hints[f.name])}, default {shown}: {f.metadata.get('help', '')}"))
    return out
