"""The engine on CPU: a run dir that load_model reads, schedule, freezing, EMA, non-finite handling."""
from __future__ import annotations

import json
import math

import pytest
import torch

import clipdense.models as cdm
from clipdense.errors import ClipDenseError, ConfigError
from clipdense.train.checkpoint import list_checkpoints, load_state
from clipdense.data.streams import InMemorySamples
from clipdense.train.optim import lr_at
from clipdense.train.run import run_training
from test_train_support import make_samples, tiny_config


def test_run_dir_layout_and_loadable(tmp_path) -> None:
    run = tmp_path / "run"
    result = run_training(tiny_config(run, steps=5, checkpoint_every=2, keep_checkpoints=2),
                          source=InMemorySamples(make_samples()))
    assert result.step == 5
    steps = [s for s, _ in list_checkpoints(run)]
    assert steps == [4, 5]                                   # every 2 and at the end, keep 2
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5]
    assert all({"loss", "lr", "images_per_s", "grad_norm"} <= set(r) for r in records)
    assert (run / "config.yaml").is_file() and (run / "metrics.csv").is_file()
    bundle = cdm.load_model(str(run), device="cpu")
    state = load_state(run / "checkpoints" / "step-00000005")
    assert state["step"] == 5 and state["model_name"] == "tiny-vit-t8"
    saved = cdm.read_state_dict(run / "checkpoints" / "step-00000005" / "model.safetensors")
    for key, value in bundle.model.state_dict().items():
        assert torch.equal(value, saved[key])


def test_cosine_schedule_with_warmup() -> None:
    assert lr_at(0, 1.0, 10, 100) == pytest.approx(0.1)
    assert lr_at(9, 1.0, 10, 100) == pytest.approx(1.0)
    assert lr_at(55, 1.0, 10, 100) == pytest.approx(0.5)
    assert lr_at(100, 1.0, 10, 100, min_lr_ratio=0.1) == pytest.approx(0.1)


def test_locked_blocks_do_not_move_and_others_do(tmp_path) -> None:
    run = tmp_path / "run"
    before = cdm.load_model("tiny-vit-t8", device="cpu").model.state_dict()
    torch.manual_seed(0)
    run_training(tiny_config(run, steps=2, lock_image_blocks=2, lock_text_blocks=1),
                 source=InMemorySamples(make_samples()))
    torch.manual_seed(0)
    init = cdm.load_model("tiny-vit-t8", device="cpu").model.state_dict()
    after = cdm.load_model(str(run), device="cpu").model.state_dict()
    for key in ("visual.conv1.weight", "visual.transformer.resblocks.1.mlp.c_fc.weight",
                "transformer.resblocks.0.attn.in_proj_weight", "token_embedding.weight"):
        assert torch.equal(init[key], after[key]), key
    for key in ("visual.transformer.resblocks.2.mlp.c_fc.weight", "transformer.resblocks.1.attn.in_proj_weight"):
        assert not torch.equal(init[key], after[key]), key
    assert before.keys() == after.keys()


def test_lock_more_blocks_than_exist_is_a_config_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="vision tower has 3 blocks"):
        run_training(tiny_config(tmp_path / "r", lock_image_blocks=9), source=InMemorySamples(make_samples()))


def test_ema_written_next_to_weights(tmp_path) -> None:
    run = tmp_path / "run"
    run_training(tiny_config(run, steps=2, ema_decay=0.5), source=InMemorySamples(make_samples()))
    step = run / "checkpoints" / "step-00000002"
    ema = cdm.read_state_dict(step / "ema.safetensors")
    raw = cdm.read_state_dict(step / "model.safetensors")
    key = "visual.transformer.resblocks.0.mlp.c_fc.weight"
    assert not torch.equal(ema[key], raw[key])
    assert cdm.load_model(str(step / "ema.safetensors"), device="cpu").name == "tiny-vit-t8"


def _poison_lr(step: int, trainer) -> None:
    """Make the weights NaN after step 2 so step 3's loss is non-finite."""
    if step == 2:
        with torch.no_grad():
            trainer.objective.model.visual.proj.fill_(float("nan"))


def test_nonfinite_loss_stops_naming_step_and_checkpoint(tmp_path) -> None:
    run = tmp_path / "run"
    with pytest.raises(ClipDenseError, match=r"at step 3; last good checkpoint .*step-00000002"):
        run_training(tiny_config(run, steps=4), source=InMemorySamples(make_samples()), hooks=[_poison_lr])


def test_nonfinite_check_between_boundaries_never_saves_bad_weights(tmp_path) -> None:
    """Policy 'stop' reads the device flag only at boundaries: step 3's NaN surfaces at step 4, unsaved."""
    run = tmp_path / "run"
    with pytest.raises(ClipDenseError, match=r"at step 3; last good checkpoint .*step-00000002"):
        run_training(tiny_config(run, steps=8, log_every=4, checkpoint_every=2),
                     source=InMemorySamples(make_samples()), hooks=[_poison_lr])
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-00000002"]


def test_nonfinite_skip_policy_keeps_going(tmp_path) -> None:
    run = tmp_path / "run"
    calls = []

    def poison_once(step: int, trainer) -> None:
        calls.append(step)
        if step == 2:
            trainer._saved = trainer.objective.model.visual.proj.detach().clone()
            with torch.no_grad():
                trainer.objective.model.visual.proj.fill_(float("nan"))
        if step == 3:
            with torch.no_grad():
                trainer.objective.model.visual.proj.copy_(trainer._saved)

    result = run_training(tiny_config(run, steps=5, on_nonfinite="skip"), source=InMemorySamples(make_samples()),
                          hooks=[poison_once])
    assert result.skipped_steps == 1 and result.step == 5 and math.isfinite(result.last_losses["loss"])


def test_refuses_to_overwrite_a_run(tmp_path) -> None:
    run = tmp_path / "run"
    run_training(tiny_config(run, steps=2), source=InMemorySamples(make_samples()))
    with pytest.raises(ConfigError, match="already holds checkpoints"):
        run_training(tiny_config(run, steps=2), source=InMemorySamples(make_samples()))
