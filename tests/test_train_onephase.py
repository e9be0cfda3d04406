"""Objectives built in one phase: --data parsed and opened once, frozen modules kept out of state.pt, flags
that cannot act on an objective said or refused."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import clipdense.data.readers as readers
import clipdense.data.spec as spec_module
import clipdense.data.world.folder as world_folder
from clipdense.data.streams import InMemorySamples
from clipdense.errors import ConfigError
from clipdense.train.checkpoint import load_state
from clipdense.train.run import run_training
from test_train_support import make_samples, tiny_config

DETECTOR = {"image_size": 64, "fpn_channels": 16, "head_channels": 16, "fc_channels": 32, "roi_batch": 16,
            "rpn_batch": 16, "rpn_pre_nms_train": 50, "rpn_post_nms_train": 20, "rpn_pre_nms_test": 50,
            "rpn_post_nms_test": 20, "templates": "world", "anchor_sizes": [16, 32, 64, 128, 256]}


def _spy(monkeypatch: pytest.MonkeyPatch, original, counts: dict[str, int], name: str) -> None:
    """Count the calls of ``original`` wherever a clipdense module imported it."""
    def counted(*args, **kwargs):
        if name != "parse_data" or not isinstance(args[0], spec_module.DataSpec):   # an already parsed spec
            counts[name] += 1
        return original(*args, **kwargs)
    for module in [m for n, m in sys.modules.items() if n.startswith("clipdense") and m is not None]:
        if getattr(module, original.__name__, None) is original:
            monkeypatch.setattr(module, original.__name__, counted)


def test_fvit_run_parses_data_and_opens_the_world_and_its_reader_once(tiny_world: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    counts = {"parse_data": 0, "open_world": 0, "reader": 0}
    _spy(monkeypatch, spec_module.parse_data, counts, "parse_data")
    _spy(monkeypatch, world_folder.open_world, counts, "open_world")
    kinds = {name: kind for name, kind in readers.READERS.items()}
    for name, kind in kinds.items():
        def opened(*args, _open=kind.open, **kwargs):
            counts["reader"] += 1
            return _open(*args, **kwargs)
        monkeypatch.setitem(readers.READERS, name, readers.ReaderKind(kind.fields, opened, kind.streaming))
    config = tiny_config(tmp_path / "run", objective="fvit", data=str(tiny_world), steps=1, batch_size=2,
                         checkpoint_every=1, objective_args=DETECTOR)
    run_training(config)
    assert counts == {"parse_data": 1, "open_world": 1, "reader": 1}


def _tensor_bytes(tree) -> int:
    if isinstance(tree, torch.Tensor):
        return tree.numel() * tree.element_size()
    if isinstance(tree, dict):
        return sum(_tensor_bytes(v) for v in tree.values())
    if isinstance(tree, (list, tuple)):
        return sum(_tensor_bytes(v) for v in tree)
    return 0


def test_clipself_state_holds_the_student_and_optimiser_not_the_teacher(tmp_path: Path) -> None:
    run = tmp_path / "run"
    config = tiny_config(run, objective="clipself", steps=2, batch_size=4, checkpoint_every=2,
                         objective_args={"student_size": 64, "max_regions": 4})
    run_training(config, source=InMemorySamples(make_samples(8)))
    step = run / "checkpoints" / "step-00000002"
    state = load_state(step)
    assert not any(key.startswith("teacher.") for key in state["objective"])
    student = (step / "model.safetensors").stat().st_size
    optimiser = _tensor_bytes(state["optimizer"])
    assert (step / "state.pt").stat().st_size <= 1.2 * (student + optimiser)
    assert optimiser > 0 and _tensor_bytes(state["objective"]) < 0.01 * student


def test_a_head_objective_refuses_locked_blocks_and_says_eval_every_does_not_act(
        tiny_world: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = tiny_config(tmp_path / "locked", objective="fvit", data=str(tiny_world), steps=1, batch_size=2,
                         lock_image_blocks=1, objective_args=DETECTOR)
    with pytest.raises(ConfigError, match="--lock-image-blocks: objective 'fvit' trains no CLIP tower"):
        run_training(config)
    config = tiny_config(tmp_path / "head", objective="fvit", data=str(tiny_world), steps=1, batch_size=2,
                         checkpoint_every=1, eval_every=1, objective_args=DETECTOR)
    run_training(config, make_evaluator=lambda bundle: pytest.fail("a head run must not build an evaluator"))
    warnings = [line for line in capsys.readouterr().err.splitlines() if "--eval-every" in line]
    assert len(warnings) == 1 and "objective 'fvit' trains a head" in warnings[0]
    state = load_state(tmp_path / "head" / "checkpoints" / "step-00000001")
    assert state["objective"] == {} or not any(k.startswith("backbone.") for k in state["objective"])


def test_clip_run_gets_the_evaluator_the_caller_hands_it(tmp_path: Path) -> None:
    seen: list[int] = []

    def make(bundle):
        assert bundle.name == "tiny-vit-t8"
        return lambda model, step: seen.append(step) or {"probe": 1.0}
    run_training(tiny_config(tmp_path / "run", steps=2, eval_every=1), source=InMemorySamples(make_samples()),
                 make_evaluator=make)
    assert seen == [1, 2]
