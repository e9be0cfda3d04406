"""clip: equals open_clip's ClipLoss and a hand-written InfoNCE; learns; reaches every parameter."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss

import clipdense.models as cdm
from clipdense.objectives import build_objective
from clipdense.data.streams import InMemorySamples
from clipdense.train.data import BatchStream
from test_train_support import make_samples


def objective_and_batch(name: str, batch_size: int = 8, **options):
    torch.manual_seed(0)
    bundle = cdm.load_model("tiny-vit-t8", device="cpu")
    bundle.model.train()
    objective = build_objective(name, bundle, options, total_steps=20)
    stream = BatchStream(InMemorySamples(make_samples(batch_size)), objective.sample_transform(), batch_size,
                         collate=objective.collate)
    return objective, stream


def check_learns_and_reaches_every_parameter(objective, stream, steps: int = 10, lr: float = 1e-3,
                                             key: str = "loss") -> None:
    """``key`` on a fixed batch drops after a few AdamW steps; every trainable parameter gets a gradient."""
    batch = stream.next_batch()
    params = [p for _, p in objective.named_trainable_parameters()]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    losses = []
    for step in range(steps):
        out = objective(batch)
        loss = out["loss"]
        optimizer.zero_grad()
        loss.backward()
        if step == 0:
            missing = [n for n, p in objective.named_trainable_parameters()
                       if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0]
            assert not missing, f"no gradient reaches {missing}"
        optimizer.step()
        objective.after_step(step + 1)
        losses.append(float(out[key].detach()))
    assert losses[-1] < 0.8 * losses[0], losses


def test_clip_equals_open_clip_cliploss_and_infonce() -> None:
    objective, stream = objective_and_batch("clip")
    batch = stream.next_batch()
    out = objective(batch)
    model = objective.model
    image = F.normalize(model.encode_image(batch["image"]), dim=-1)
    text = F.normalize(model.encode_text(batch["text"]), dim=-1)
    scale = model.logit_scale.exp()
    reference = ClipLoss()(image, text, scale)
    logits = scale * image @ text.T
    labels = torch.arange(len(image))
    by_hand = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    assert torch.allclose(out["loss"], reference, atol=1e-6)
    assert torch.allclose(out["loss"], by_hand, atol=1e-5)
    assert out["loss"].item() > 0.5 * math.log(8)            # untrained: near chance, not a degenerate 0


def test_clip_learns_and_gradients_reach_every_parameter() -> None:
    objective, stream = objective_and_batch("clip")
    check_learns_and_reaches_every_parameter(objective, stream)


def test_clip_clamps_temperature() -> None:
    objective, _ = objective_and_batch("clip")
    with torch.no_grad():
        objective.model.logit_scale.fill_(10.0)
    objective.after_step(1)
    assert abs(objective.model.logit_scale.item() - math.log(100.0)) < 1e-6
