"""Exact resume: a run SIGKILLed mid-way and resumed ends bit-identical to an uninterrupted run."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import clipdense.models as cdm
from clipdense.errors import ConfigError
from clipdense.train.checkpoint import latest_checkpoint
from clipdense.data.streams import InMemorySamples
from clipdense.train.run import run_training
from test_train_support import make_samples, tiny_config

TESTS = Path(__file__).parent
OPTIONS = dict(steps=7, checkpoint_every=3, keep_checkpoints=1, accum_steps=2, ema_decay=0.9, warmup_steps=2)

SCRIPT = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from clipdense.data.streams import InMemorySamples
from clipdense.train.run import run_training
from test_train_support import make_samples, tiny_config

def kill_at(step, trainer):
    if step == {kill_step}:
        os.kill(os.getpid(), signal.SIGKILL)

run_training(tiny_config({out!r}, **{options!r}), source=InMemorySamples(make_samples(), seed=3),
             hooks=[kill_at])
"""


def _weights(run: Path) -> dict[str, torch.Tensor]:
    step, path = latest_checkpoint(run)
    return {"__step__": torch.tensor(step), **cdm.read_state_dict(path / "model.safetensors"),
            **{f"ema.{k}": v for k, v in cdm.read_state_dict(path / "ema.safetensors").items()}}


@pytest.mark.slow
@pytest.mark.parametrize("loader", [{}, {"prefetch_batches": 2, "augment_threads": 2}], ids=["plain", "prefetch"])
def test_sigkill_then_resume_is_bit_identical(tmp_path, loader: dict) -> None:
    """The interrupted run may build batches ahead on threads: the result must not depend on it."""
    full, killed = tmp_path / "full", tmp_path / "killed"
    run_training(tiny_config(full, **OPTIONS), source=InMemorySamples(make_samples(), seed=3))

    options = {**OPTIONS, **loader}
    script = SCRIPT.format(tests=str(TESTS), kill_step=5, out=str(killed), options=options)
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert latest_checkpoint(killed)[0] == 3                  # died after step 5, last checkpoint at 3

    run_training(tiny_config(killed, resume=str(killed), **options), source=InMemorySamples(make_samples(), seed=3))
    expected, got = _weights(full), _weights(killed)
    assert expected.keys() == got.keys()
    different = [k for k in expected if not torch.equal(expected[k], got[k])]
    assert not different, different[:5]
    lines_full = (full / "metrics.jsonl").read_text().splitlines()
    lines_resumed = (killed / "metrics.jsonl").read_text().splitlines()
    assert len(lines_full) == len(lines_resumed) == 7


def test_resume_from_a_run_of_another_model_is_one_clear_error(tmp_path) -> None:
    run = tmp_path / "run"
    run_training(tiny_config(run, steps=2), source=InMemorySamples(make_samples()))
    with pytest.raises(ConfigError, match="that run trains model 'tiny-vit-t8', not 'tiny-vit-s8'"):
        run_training(tiny_config(run, model="tiny-vit-s8", resume=str(run), steps=4),
                     source=InMemorySamples(make_samples()))


def test_resume_without_checkpoint_is_an_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="no checkpoint found"):
        run_training(tiny_config(tmp_path / "x", resume=str(tmp_path / "x")), source=InMemorySamples(make_samples()))
