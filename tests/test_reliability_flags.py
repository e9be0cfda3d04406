"""Issue 32: every flag of every command, given one value outside its declared range, is exit 2 and one line that
names the flag, no traceback. The cases are GENERATED from the parsers (``flag_plan``), so a flag is covered the day
it is added; a number declared without a range fails ``test_every_numeric_flag_declares_its_range``.

What a flag declares, and the out-of-range value it gets:
- ``choices``: a word that is not one of them;
- an argparse ``type`` made by ``cli.common.bounded`` (COUNT, PIXELS, PROBABILITY, ...): just below its low end (or at
  it when the end is open), above its high end when it has no low end;
- a free-text ``type`` that checks its value (``cli.common.DEVICE``): its ``bad_example``;
- a ``CheckedValue`` (config dataclass fields declared with ``setting(range=...)``): the same from its ``Range``;
- an evaluation option field (``option(low=, high=, choices=)``, checked by ``build_options`` when ``eval`` runs):
  the same from the field's metadata, run with a world as ``--data``.
Switches take no value and free text (paths, names, comma lists) has no range to leave: those are listed with
their reason (``UNBOUNDED_REASONS``) and their bad values are rows of ``test_reliability_cli.CASES``.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass

import pytest

from clipdense.cli.common import CheckedValue
from clipdense.cli.main import build_parser, main

SWITCH = "a switch: takes no value"
FREE_TEXT = "free text (a path, a model or class name, a comma list): checked where it is used, bad values in CASES"
UNBOUNDED_REASONS = (SWITCH, FREE_TEXT)
#: value-less argparse actions
_SWITCHES = (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse._StoreConstAction,  # noqa: SLF001
             argparse._CountAction, argparse._HelpAction, argparse._VersionAction,  # noqa: SLF001
             argparse.BooleanOptionalAction, argparse._AppendConstAction)  # noqa: SLF001


@dataclass(frozen=True)
class FlagCase:
    """One flag of one command and what the generated test gives it."""

    command: tuple[str, ...]
    flag: str
    bad: str | None          # the out-of-range value (None: nothing to violate, see ``reason``)
    reason: str = ""         # why there is no bad value, or where the bound comes from
    runs: bool = False       # checked when the command runs (eval options), not by the parser

    @property
    def id(self) -> str:
        return f"{' '.join(self.command)} {self.flag}"


def _outside(kind: type, low: float | None, high: float | None, low_open: bool = False,
             high_open: bool = False) -> str | None:
    """A value of ``kind`` just outside [low, high] (the open end itself when the interval is open there)."""
    if low is not None and math.isfinite(low):
        value = low if low_open else low - 1
    elif high is not None and math.isfinite(high):
        value = high if high_open else high + 1
    else:
        return "nan" if kind is float else None
    return str(int(value)) if kind is int else repr(float(value))


def _field_bad(field: dataclasses.Field) -> str | None:
    from clipdense.evaluation.options import choices_of

    meta, kind = field.metadata, field.type
    if choices_of(field) is not None:
        return "no-such-choice"
    base = kind if isinstance(kind, type) else str(kind).split("|")[0].strip()
    number = {"int": int, "float": float}.get(base if isinstance(base, str) else base.__name__)
    if number is None:
        return None
    return _outside(number, meta.get("low"), meta.get("high")) or ("nan" if number is float else None)


def case_of(command: tuple[str, ...], action: argparse.Action) -> FlagCase:
    """What the generated test gives ``action``'s flag."""
    flag = max(action.option_strings, key=len)
    if isinstance(action, _SWITCHES) or action.nargs == 0:
        return FlagCase(command, flag, None, SWITCH)
    if action.choices is not None:
        return FlagCase(command, flag, "no-such-choice", "choices")
    example = getattr(action.type, "bad_example", None)   # a checked free-text type (--device)
    if example is not None:
        return FlagCase(command, flag, example, "checked type")
    bounds = getattr(action.type, "bounds", None)
    if bounds is not None:
        kind, low, high, low_open = bounds
        return FlagCase(command, flag, _outside(kind, low, high, low_open), "bounded type")
    if isinstance(action, CheckedValue):
        rng = getattr(action.check, "__self__", None)
        if rng is not None and hasattr(rng, "low"):
            return FlagCase(command, flag, _outside(action.kind, rng.low, rng.high, rng.low_open, rng.high_open),
                            "setting range")
    field = getattr(action, "option_field", None)
    if field is not None:
        bad = _field_bad(field)
        return FlagCase(command, flag, bad, "option field" if bad else FREE_TEXT, runs=True)
    if action.type in (int, float):
        return FlagCase(command, flag, None, f"UNBOUNDED {action.type.__name__}: declare its range")
    return FlagCase(command, flag, None, FREE_TEXT)


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    seen = set()
    for action in parser._actions:   # noqa: SLF001 - argparse has no public walk
        if isinstance(action, argparse._SubParsersAction):   # noqa: SLF001
            for name, sub in action.choices.items():
                if id(sub) not in seen:
                    seen.add(id(sub))
                    yield from _commands(sub, path + (name,))
    if path:
        yield path, parser


def flag_plan() -> list[FlagCase]:
    """Every optional flag of every (sub)command of ``clipdense`` and what the test gives it."""
    cases = []
    for command, parser in _commands(build_parser()):
        for action in parser._actions:   # noqa: SLF001
            if action.option_strings and not isinstance(action, argparse._SubParsersAction):   # noqa: SLF001
                cases.append(case_of(command, action))
    return cases


PLAN = flag_plan()
BOUNDED = [c for c in PLAN if c.bad is not None]


def test_every_numeric_flag_declares_its_range():
    unbounded = [c.id for c in PLAN if c.reason.startswith("UNBOUNDED")]
    assert not unbounded, f"numeric flags without a declared range (use cli.common.bounded / setting(range=)): " \
                          f"{unbounded}"
    assert all(c.bad is not None or c.reason in UNBOUNDED_REASONS for c in PLAN)
    assert len(BOUNDED) >= 60 and len({c.command for c in PLAN}) >= 15


def _run(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:   # argparse's own errors
        return int(exc.code)


@pytest.mark.parametrize("case", [c for c in BOUNDED if not c.runs], ids=lambda c: c.id)
def test_out_of_range_flag_is_one_line(case: FlagCase, capsys) -> None:
    code = _run([*case.command, f"{case.flag}={case.bad}"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, (case, err)
    assert case.flag in lines[0] and ": error: " in lines[0], (case, lines)


@pytest.mark.parametrize("case", [c for c in BOUNDED if c.runs], ids=lambda c: c.id)
def test_out_of_range_option_is_one_line_before_the_model_loads(case: FlagCase, capsys, tiny_world,
                                                                monkeypatch) -> None:
    import importlib

    def no_model(*_, **__):   # the option must be refused before a model is loaded
        raise AssertionError("loaded a model")

    monkeypatch.setattr(importlib.import_module(f"clipdense.cli.{case.command[0]}"), "load_cli_model", no_model)
    code = _run([*case.command, "--data", str(tiny_world), "--device", "cpu", f"{case.flag}={case.bad}"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, (case, err)
    assert case.flag in lines[0], (case, lines)


def test_the_plan_is_what_the_parsers_declare():
    """Hand-checked rows of the generated plan (so that the generator cannot silently skip a kind of flag)."""
    by_id = {c.id: c for c in PLAN}
    assert by_id["train --steps"].bad == "0"                        # STEPS: an int >= 1
    assert by_id["segment --background-threshold"].bad == "-1.0"    # PROBABILITY: [0, 1]
    assert by_id["serve --port"].bad == "0"
    assert by_id["train --precision"].bad == "no-such-choice"
    assert by_id["train --lr"].reason == "setting range" and by_id["train --lr"].bad == "0.0"   # lr > 0
    assert by_id["eval --batch-size"].runs and by_id["eval --batch-size"].bad == "0"
    assert by_id["segment --device"].bad == "no-such-device" and by_id["export --device"].reason == "checked type"
    assert by_id["segment --out"].reason == FREE_TEXT and by_id["segment --no-cache"].reason == SWITCH


def _float_fields(cls: type) -> list[str]:
    """Fields of a dataclass typed float (or float | None, or a tuple / list of floats)."""
    import typing

    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        text = str(hints[f.name])
        if hints[f.name] is float or "float" in text:
            out.append(f.name)
    return out


def test_non_finite_objective_args_are_refused_for_every_objective():
    """``--objective-arg KEY=.nan`` (YAML's NaN) or ``inf``: every float option of every registered objective."""
    from clipdense.errors import ConfigError
    from clipdense.objectives import OBJECTIVES, objective_class, objective_options

    tried = 0
    for name in OBJECTIVES:
        for key in _float_fields(objective_class(name).Options):
            for value in (float("nan"), float("inf"), "-inf"):
                with pytest.raises(ConfigError, match=f"'{key}': expected"):
                    objective_options(name, {key: value})
                tried += 1
    assert tried >= 30


def test_non_finite_task_args_are_refused_for_every_task():
    """``--task-arg TASK.KEY=nan``: every float option of every registered evaluation task."""
    from clipdense.errors import ConfigError
    from clipdense.evaluation import EVAL_TASKS
    from clipdense.evaluation.options import build_options

    tried = 0
    for name, task in EVAL_TASKS.items():
        for key in _float_fields(task.options):
            for value in ("nan", "inf"):
                with pytest.raises(ConfigError, match=f"{name}.{key}"):
                    build_options(task.options, {key: value}, lambda k, n=name: f"--task-arg {n}.{k}")
                tried += 1
    assert tried >= 4
