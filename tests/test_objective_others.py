"""siglip, slip, silc on tiny-vit-t8: loss decreases, gradients reach every trainable parameter."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from test_objective_clip import check_learns_and_reaches_every_parameter, objective_and_batch

SMALL_SLIP = dict(mlp_dim=64, out_dim=32)
SMALL_SILC = dict(out_dim=64, hidden_dim=64, bottleneck_dim=32, local_crops=2, local_size=32)


def test_siglip_init_and_loss_equals_sigmoid_formula() -> None:
    objective, stream = objective_and_batch("siglip")
    model = objective.model
    assert math.isclose(model.logit_scale.item(), math.log(10), rel_tol=1e-6)
    assert model.logit_bias.item() == -10.0
    batch = stream.next_batch()
    image = F.normalize(model.encode_image(batch["image"]), dim=-1)
    text = F.normalize(model.encode_text(batch["text"]), dim=-1)
    logits = 10.0 * image @ text.T - 10.0
    labels = 2 * torch.eye(len(image)) - 1
    expected = -F.logsigmoid(labels * logits).sum() / len(image)
    assert torch.allclose(objective(batch)["loss"], expected, atol=1e-5)


def test_siglip_learns_and_reaches_every_parameter() -> None:
    objective, stream = objective_and_batch("siglip")
    check_learns_and_reaches_every_parameter(objective, stream)


def test_slip_learns_and_reaches_every_parameter() -> None:
    objective, stream = objective_and_batch("slip", **SMALL_SLIP)
    batch = stream.next_batch()
    assert batch["view1"].shape == batch["image"].shape and not torch.equal(batch["view1"], batch["view2"])
    out = objective(batch)
    assert out["ssl_loss"] > 0 and torch.allclose(out["loss"], out["clip_loss"] + out["ssl_loss"])
    check_learns_and_reaches_every_parameter(objective, stream)


def test_silc_multicrop_shapes_and_learning() -> None:
    objective, stream = objective_and_batch("silc", **SMALL_SILC)
    batch = stream.next_batch()
    assert batch["globals"].shape == (8, 2, 3, 64, 64) and batch["locals"].shape == (8, 2, 3, 32, 32)
    assert {n for n, p in objective.named_parameters() if n.startswith("teacher") and p.requires_grad} == set()
    out = objective(batch)
    assert out["distill_loss"] > 0
    # the distillation target moves with the teacher; the image-text part must still learn
    check_learns_and_reaches_every_parameter(objective, stream, key="clip_loss")


def test_silc_teacher_is_a_fixed_momentum_ema() -> None:
    objective, stream = objective_and_batch("silc", momentum=0.5, **SMALL_SILC)
    key = "transformer.resblocks.0.mlp.c_fc.weight"
    teacher_before = objective.teacher.state_dict()[key].clone()
    with torch.no_grad():
        objective.model.visual.state_dict()[key].add_(1.0)
    objective.after_step(1)
    student = objective.model.visual.state_dict()[key]
    assert torch.allclose(objective.teacher.state_dict()[key], 0.5 * teacher_before + 0.5 * student)


def test_silc_late_start_initialises_teacher_from_student() -> None:
    objective, stream = objective_and_batch("silc", start_fraction=0.5, **SMALL_SILC)   # total_steps 20
    batch = stream.next_batch()
    assert "distill_loss" not in objective(batch)
    key = "transformer.resblocks.0.mlp.c_fc.weight"
    with torch.no_grad():
        objective.model.visual.state_dict()[key].add_(1.0)
    objective.after_step(9)
    assert "distill_loss" not in objective(batch)
    objective.after_step(10)
    assert torch.equal(objective.teacher.state_dict()[key], objective.model.visual.state_dict()[key])
    assert objective(batch)["distill_loss"] > 0


def test_silc_started_term_survives_a_state_load() -> None:
    """The host copy of distill_on follows load_state_dict (a resumed run must keep distilling)."""
    started, stream = objective_and_batch("silc", start_fraction=0.5, **SMALL_SILC)
    started.after_step(10)
    fresh, _ = objective_and_batch("silc", start_fraction=0.5, **SMALL_SILC)
    batch = stream.next_batch()
    assert "distill_loss" not in fresh(batch)
    fresh.load_state_dict(started.state_dict())
    assert fresh(batch)["distill_loss"] > 0


def test_silc_sigmoid_variant_uses_siglips_loss_on_each_global_view(tmp_path) -> None:
    """SILC-S: the image-text term is SigLIP's sigmoid loss (with a learnable bias) averaged over the global
    views; the distillation term is unchanged; the bias is saved and reloads."""
    objective, stream = objective_and_batch("silc", contrastive="sigmoid", **SMALL_SILC)
    model = objective.model
    assert model.logit_bias.item() == -10.0 and math.isclose(model.logit_scale.exp().item(), 10.0, rel_tol=1e-5)
    batch = stream.next_batch()
    text = F.normalize(model.encode_text(batch["text"]), dim=-1)
    labels = 2 * torch.eye(len(text)) - 1
    expected = 0.0
    for view in range(batch["globals"].shape[1]):
        image = F.normalize(model.encode_image(batch["globals"][:, view]), dim=-1)
        expected = expected + (-F.logsigmoid(labels * (10.0 * image @ text.T - 10.0)).sum() / len(text))
    out = objective(batch)
    assert torch.allclose(out["clip_loss"], expected / batch["globals"].shape[1], atol=1e-5)
    assert torch.allclose(out["loss"], out["clip_loss"] + out["distill_loss"], atol=1e-6)
    check_learns_and_reaches_every_parameter(objective, stream, key="clip_loss")


def test_silc_rejects_an_unknown_contrastive_term() -> None:
    import pytest

    from clipdense.errors import ConfigError
    with pytest.raises(ConfigError, match="contrastive must be one of"):
        objective_and_batch("silc", contrastive="hinge", **SMALL_SILC)
