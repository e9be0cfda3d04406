"""Objective groupvit: the multi-label loss against open_clip's ClipLoss and a hand computation, the batch it
trains on, learning with gradients everywhere, an exact resume after SIGKILL and DDP like the other objectives."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss

import clipdense as cd
import clipdense.models as cdm
from clipdense.errors import ConfigError
from clipdense.models.groupvit import GroupViT
from clipdense.objectives import build_objective
from clipdense.objectives.groupvit import multi_label_loss
from clipdense.train.checkpoint import latest_checkpoint
from clipdense.data.streams import InMemorySamples
from clipdense.train.data import BatchStream
from clipdense.train.run import run_training
from test_objective_clip import check_learns_and_reaches_every_parameter
from test_train_support import COLOURS, SHAPES, make_samples, tiny_config

TESTS = Path(__file__).parent


def groupvit_objective(batch_size: int = 8, **options):
    torch.manual_seed(0)
    bundle = cdm.load_model("tiny-groupvit", device="cpu")
    bundle.model.train()
    objective = build_objective("groupvit", bundle, options, total_steps=20)
    stream = BatchStream(InMemorySamples(make_samples(batch_size)), objective.sample_transform(), batch_size,
                         collate=objective.collate)
    return objective, stream


def test_multi_label_loss_with_one_prompt_is_clips_infonce() -> None:
    torch.manual_seed(0)
    image, prompts = F.normalize(torch.randn(6, 16), dim=-1), F.normalize(torch.randn(6, 1, 16), dim=-1)
    scale = torch.tensor(20.0)
    assert torch.allclose(multi_label_loss(image, prompts, scale), ClipLoss()(image, prompts[:, 0], scale), atol=1e-6)


def test_multi_label_loss_by_hand() -> None:
    """Two images with two prompts each: image i's target is 1/2 on its own prompts; each prompt's is its image."""
    image = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    prompts = torch.tensor([[[1.0, 0.0], [0.6, 0.8]], [[0.0, 1.0], [0.8, 0.6]]])
    scale = torch.tensor(2.0)
    logits = scale * image @ prompts.reshape(4, 2).T                        # (2 images, 4 prompts)
    log_p = logits.log_softmax(1)
    loss_image = -(0.5 * (log_p[0, 0] + log_p[0, 1]) + 0.5 * (log_p[1, 2] + log_p[1, 3])) / 2
    log_q = logits.T.log_softmax(1)                                          # each prompt over the 2 images
    loss_prompt = -(log_q[0, 0] + log_q[1, 0] + log_q[2, 1] + log_q[3, 1]) / 4
    assert torch.allclose(multi_label_loss(image, prompts, scale), (loss_image + loss_prompt) / 2, atol=1e-6)


def test_batch_holds_noun_prompts_and_the_loss_is_the_sum_of_both_terms() -> None:
    objective, stream = groupvit_objective(multi_label=2)
    batch = stream.next_batch()
    assert batch["prompts"].shape == (8, 2, 32)
    tokenizer = cd.load_model("tiny-groupvit").tokenizer
    # make_samples' captions are "a <colour> <shape>": one noun in the prompt, then the caption as padding
    nouns = tokenizer([f"a photo of a {c} {s}." for c in COLOURS for s in SHAPES])
    assert all((nouns == row).all(1).any() for row in batch["prompts"][:, 0])
    assert torch.equal(batch["prompts"][:, 1], batch["text"])
    out = objective(batch)
    assert torch.allclose(out["loss"], out["clip_loss"] + out["multi_label_loss"])
    plain, plain_stream = groupvit_objective(multi_label=0)
    plain_batch = plain_stream.next_batch()
    assert "prompts" not in plain_batch and set(plain(plain_batch)) == {
        "loss", "clip_loss", "logit_scale", "groups_s1", "groups_s2", "entropy_s1", "entropy_s2"}
    with pytest.raises(ConfigError, match="needs a '\\{\\}'"):
        groupvit_objective(prompt="a photo")


def test_groupvit_learns_and_reaches_every_parameter() -> None:
    objective, stream = groupvit_objective()
    assert isinstance(objective.model, GroupViT)
    check_learns_and_reaches_every_parameter(objective, stream)


OPTIONS = dict(objective="groupvit", model="tiny-groupvit", steps=7, checkpoint_every=3, keep_checkpoints=1,
               accum_steps=2, ema_decay=0.9, warmup_steps=2)
SCRIPT = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from clipdense.data.streams import InMemorySamples
from clipdense.train.run import run_training
from test_train_support import COLOURS, SHAPES, make_samples, tiny_config

def kill_at(step, trainer):
    if step == 5:
        os.kill(os.getpid(), signal.SIGKILL)

run_training(tiny_config({out!r}, **{options!r}), source=InMemorySamples(make_samples(), seed=3), hooks=[kill_at])
"""


def _weights(run: Path) -> dict[str, torch.Tensor]:
    step, path = latest_checkpoint(run)
    return {"__step__": torch.tensor(step), **cdm.read_state_dict(path / "model.safetensors"),
            **{f"ema.{k}": v for k, v in cdm.read_state_dict(path / "ema.safetensors").items()}}


@pytest.mark.slow
def test_sigkill_then_resume_is_bit_identical(tmp_path: Path) -> None:
    """Gumbel noise, noun draws, EMA and accumulation included: resumed == uninterrupted, bit for bit."""
    full, killed = tmp_path / "full", tmp_path / "killed"
    run_training(tiny_config(full, **OPTIONS), source=InMemorySamples(make_samples(), seed=3))
    script = SCRIPT.format(tests=str(TESTS), out=str(killed), options=OPTIONS)
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert latest_checkpoint(killed)[0] == 3
    run_training(tiny_config(killed, resume=str(killed), **OPTIONS), source=InMemorySamples(make_samples(), seed=3))
    expected, got = _weights(full), _weights(killed)
    assert expected.keys() == got.keys()
    different = [k for k in expected if not torch.equal(expected[k], got[k])]
    assert not different, different[:5]
    assert isinstance(cd.load_model(killed, device="cpu").model, GroupViT)


DDP_SCRIPT = """
import os, sys
sys.path.insert(0, {tests!r})
from clipdense.data.streams import InMemorySamples
from clipdense.train.run import run_training
from test_train_support import make_samples, tiny_config

rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
source = InMemorySamples(make_samples(16), rank=rank, world_size=world, shuffle=False)
run_training(tiny_config({out!r}, objective="groupvit", model={model!r}, steps=2, checkpoint_every=100, batch_size=8,
                         warmup_steps=0), source=source)
"""


def _launch(out: Path, model: str, world: int) -> list[dict]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    script = textwrap.dedent(DDP_SCRIPT.format(tests=str(TESTS), out=str(out), model=model))
    procs = []
    for rank in range(world):
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        if world > 1:
            env.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                       MASTER_PORT=str(port))
        procs.append(subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    for proc in procs:
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err[-3000:]
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.distributed
def test_two_ranks_match_one_process_and_groupvit_trains_under_ddp(tmp_path: Path) -> None:
    """On a model without noise (the tiny CLIP) two gloo ranks give one process's losses, multi-label term
    included (its gather and soft targets are right); GroupViT itself trains under DDP (no unused parameters)."""
    single = _launch(tmp_path / "one", "tiny-vit-t8", 1)
    double = _launch(tmp_path / "two", "tiny-vit-t8", 2)
    for key in ("loss", "multi_label_loss"):
        assert single[0][key] == pytest.approx(double[0][key], abs=1e-5)
        assert single[1][key] == pytest.approx(double[1][key], abs=1e-4)
    grouped = _launch(tmp_path / "groupvit", "tiny-groupvit", 2)
    assert len(grouped) == 2 and grouped[1]["multi_label_loss"] > 0
