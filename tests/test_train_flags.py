"""`clipdense train` / `distill` flags are generated from TrainConfig's fields: help defaults are the defaults each
command runs with, and every declared range is enforced on the command line and in YAML alike."""
from __future__ import annotations

import dataclasses
import math
import re

import pytest

from clipdense.cli.distill import DISTILL_DEFAULTS, resolve_distill_config
from clipdense.cli.main import build_parser
from clipdense.cli.train import resolve_config
from clipdense.errors import ConfigError
from clipdense.objectives.clipself import ClipSelfOptions
from clipdense.train.config import TrainConfig, flag_of

FIELDS = [f for f in dataclasses.fields(TrainConfig) if f.metadata["flag"]]
RANGED = [f for f in FIELDS if f.metadata["range"] is not None]
#: the flag names `clipdense train` had before they were generated: each must keep working
OLD_FLAGS = ("--objective", "--data", "--model", "--pretrained", "--out", "--steps", "--batch-size", "--accum-steps",
             "--lr", "--warmup-steps", "--weight-decay", "--grad-clip", "--grad-checkpointing", "--compile",
             "--ema-decay", "--lock-image-blocks", "--lock-text-blocks", "--checkpoint-every", "--keep-checkpoints",
             "--log-every", "--eval-every", "--val-data", "--seed", "--device", "--num-workers", "--prefetch-batches",
             "--augment-threads", "--precision", "--on-nonfinite", "--resume", "--config", "--objective-arg")


def _command(name: str):
    parser = build_parser()
    return parser, next(a for a in parser._actions if a.dest == "command").choices[name]


def _actions(command: str) -> dict[str, object]:
    return {option: action for action in _command(command)[1]._actions for option in action.option_strings}


def _help_default(action) -> str | None:
    found = re.search(r"\(default: (.*)\)$", action.help or "")
    return found.group(1) if found else None


def _shown(value) -> str | None:
    if value in (None, "", []):
        return None
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)


def test_every_field_has_its_flag_and_the_old_flag_names_work():
    actions = _actions("train")
    assert {flag_of(f.name) for f in FIELDS} <= set(actions)
    assert set(OLD_FLAGS) <= set(actions) and set(OLD_FLAGS) <= set(_actions("distill")) | {"--objective"}
    args = build_parser().parse_args(["train", "--compile", "--steps", "7", "--lr", "0.5", "--precision", "fp32"])
    config = resolve_config(args)
    assert (config.compile, config.steps, config.lr, config.precision) == (True, 7, 0.5, "fp32")


def test_train_help_defaults_are_the_dataclass_defaults():
    actions = _actions("train")
    for f in FIELDS:
        assert _help_default(actions[flag_of(f.name)]) == _shown(f.default), f.name
    resolved = resolve_config(build_parser().parse_args(["train"]))
    assert resolved == TrainConfig()


def test_distill_help_shows_the_defaults_distill_runs_with():
    actions = _actions("distill")
    ran = resolve_distill_config(build_parser().parse_args(["distill"]))
    for f in FIELDS:
        if f.name != "objective":
            assert _help_default(actions[flag_of(f.name)]) == _shown(getattr(ran, f.name)), f.name
    assert {_help_default(actions[flag_of(name)]) for name in DISTILL_DEFAULTS} == {
        _shown(value) for value in DISTILL_DEFAULTS.values()}
    assert _help_default(actions["--steps"]) == "300" and _help_default(actions["--model"]) == "tiny-vit-s8"
    options = ClipSelfOptions(**ran.objective_args)
    for f in dataclasses.fields(ClipSelfOptions):
        assert _help_default(actions[flag_of(f.name)]) == _shown(getattr(options, f.name)), f.name


def _out_of_range(f: dataclasses.Field) -> list[str]:
    """Values just outside the field's declared range, and the non-finite ones for a float field."""
    rng, step = f.metadata["range"], 1 if f.type == "int" else 0.5
    values = []
    if math.isfinite(rng.low):
        values.append(rng.low if rng.low_open else rng.low - step)
    if math.isfinite(rng.high):
        values.append(rng.high if rng.high_open else rng.high + step)
    texts = [f"{v:g}" for v in values]
    return texts + (["nan", "inf", "-inf"] if f.type == "float" else ["1.5"])


@pytest.mark.parametrize("field_", RANGED, ids=[f.name for f in RANGED])
def test_each_out_of_range_value_is_refused_naming_the_flag(field_, capsys):
    flag, expected = flag_of(field_.name), field_.metadata["expected"]
    parser, _ = _command("train")
    for text in _out_of_range(field_):
        with pytest.raises(SystemExit) as exit_:
            parser.parse_args(["train", f"{flag}={text}"])
        err = capsys.readouterr().err.strip()
        assert exit_.value.code == 2 and len(err.splitlines()) == 1, (flag, text, err)
        assert f"{flag} {text}: " in err and f"expected {expected}" in err, err
        if text != "1.5":   # the same value from YAML is refused by validate in the same words
            value = float(text) if field_.type == "float" else int(text)
            with pytest.raises(ConfigError, match=re.escape(f"{flag} {value!r}: expected {expected}")):
                dataclasses.replace(TrainConfig(), **{field_.name: value}).validate()
    rng = field_.metadata["range"]
    edge = rng.low if math.isfinite(rng.low) and not rng.low_open else field_.default
    assert getattr(parser.parse_args(["train", flag, f"{edge:g}"]), field_.name) == edge
