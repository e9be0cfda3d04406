"""GroupViT: the assignment (one-hot forward, soft gradient), group counts per stage, segments through both
stages, the segmenter's class scores on a hand-computed case, and loading by name / file / run dir."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

import clipdense as cd
from clipdense.errors import ModelLoadError
from clipdense.models import available_models, model_config
from clipdense.models.families import FAMILY_KEY, family_of_name
from clipdense.models.groupvit import (AssignAttention, GroupViT, GroupViTConfig, GroupViTSegmenter,
                                       chained_assignments, hard_assignment)
from clipdense.models.segmenters import segmenter_of
from clipdense.models.weights import read_metadata


def small_groupvit(**vision) -> GroupViT:
    torch.manual_seed(0)
    cfg = {"embed_dim": 32, "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "heads": 2,
                                           "depths": [1, 1, 1], "groups": [6, 3], **vision},
           "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    return GroupViT(GroupViTConfig.from_dict(cfg, "test")).eval()


def _is_one_hot(assignment: torch.Tensor, dim: int) -> bool:
    values_ok = bool(((assignment == 0) | (assignment == 1)).all())
    return values_ok and bool((assignment.sum(dim) == 1).all())


def test_hard_assignment_is_one_hot_forward_with_the_softmax_gradient() -> None:
    logits = torch.randn(2, 5, 7, requires_grad=True)
    weights = torch.randn(2, 5, 7)
    hard = hard_assignment(logits, dim=1)
    assert _is_one_hot(hard.detach(), dim=1)
    assert torch.equal(hard.detach().argmax(1), logits.detach().argmax(1))
    grad_hard, = torch.autograd.grad((hard * weights).sum(), logits)
    grad_soft, = torch.autograd.grad((logits.softmax(1) * weights).sum(), logits)
    assert torch.allclose(grad_hard, grad_soft) and grad_hard.abs().sum() > 0


def test_training_assignment_is_gumbel_straight_through_and_test_time_is_plain_argmax() -> None:
    attention = AssignAttention(8, gumbel_tau=0.5).train()
    logits = torch.randn(2, 4, 10, requires_grad=True)
    weights = torch.randn(2, 4, 10)
    torch.manual_seed(3)
    hard = attention.assign(logits)
    torch.manual_seed(3)
    soft = F.gumbel_softmax(logits, tau=0.5, hard=False, dim=1)   # the same noise, no straight-through
    assert _is_one_hot(hard.detach(), dim=1)
    assert torch.equal(hard.detach(), F.one_hot(soft.detach().argmax(1), 4).transpose(1, 2).float())
    grad_hard, = torch.autograd.grad((hard * weights).sum(), logits)
    grad_soft, = torch.autograd.grad((soft * weights).sum(), logits)
    assert torch.allclose(grad_hard, grad_soft, atol=1e-6) and grad_hard.abs().sum() > 0
    attention.eval()
    first, second = attention.assign(logits), attention.assign(logits)
    assert torch.equal(first, second)   # no noise at test time
    assert torch.equal(first.detach(), F.one_hot(logits.detach().argmax(1), 4).transpose(1, 2).float())


def test_gradient_reaches_the_assignment_projections_through_the_soft_path() -> None:
    model = small_groupvit().train()
    model.encode_image(torch.randn(2, 3, 32, 32)).square().sum().backward()
    for stage in model.visual.stages[:2]:
        assign = stage.grouping.assign
        assert assign.q_proj.weight.grad.abs().sum() > 0 and assign.k_proj.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("vision, groups", [({}, [6, 3]), ({"depths": [2, 0, 1], "groups": [5, 2]}, [5, 2]),
                                            ({"depths": [1, 1, 1, 1], "groups": [8, 4, 2]}, [8, 4, 2])])
def test_group_count_per_stage(vision: dict, groups: list[int]) -> None:
    model = small_groupvit(**vision).train()
    out = model.visual.forward_groups(torch.randn(2, 3, 40, 48))      # any size: a 5 x 6 patch grid
    assert out.grid == (5, 6)
    inputs = [30, *groups[:-1]]
    assert [tuple(a.shape) for a in out.assignments] == [(2, g, n) for g, n in zip(groups, inputs)]
    assert all(_is_one_hot(a.detach(), dim=1) for a in out.assignments)
    assert out.tokens.shape == (2, groups[-1], 32)
    assert model.encode_image(torch.randn(2, 3, 32, 32)).shape == (2, 32)


def test_named_architectures_have_the_papers_stages() -> None:
    tiny = family_of_name("tiny-groupvit").config("tiny-groupvit")
    paper = family_of_name("groupvit-s16").config("groupvit-s16")
    assert paper["vision_cfg"] == {"image_size": 224, "patch_size": 16, "width": 384, "heads": 6,
                                   "depths": [6, 3, 3], "groups": [64, 8], "mlp_ratio": 4.0, "gumbel_tau": 1.0}
    assert tiny[FAMILY_KEY] == paper[FAMILY_KEY] == "groupvit"
    bundle = cd.load_model("tiny-groupvit", device="cpu")
    out = bundle.model.visual.forward_groups(torch.randn(1, 3, 64, 64))
    assert [a.shape[1] for a in out.assignments] == tiny["vision_cfg"]["groups"]
    assert "tiny-groupvit" in available_models()["builtin"]


def test_chained_assignments_follow_each_patch_through_both_stages() -> None:
    first = F.one_hot(torch.tensor([[0, 0, 1, 2, 2, 1]]), 3).transpose(1, 2).float()   # 6 patches -> 3 groups
    second = F.one_hot(torch.tensor([[1, 0, 1]]), 2).transpose(1, 2).float()          # 3 groups -> 2 groups
    stage1, stage2 = chained_assignments([first, second])
    assert torch.equal(stage1, first)
    assert stage2.argmax(1).tolist() == [[1, 1, 0, 1, 1, 0]]


def test_segments_nest_and_class_scores_match_a_hand_computation() -> None:
    model = small_groupvit()
    images = torch.randn(1, 3, 32, 32)
    segmenter = segmenter_of(model)
    assert isinstance(segmenter, GroupViTSegmenter)
    stage1, stage2 = segmenter.segments(images)
    assert stage1.shape == stage2.shape == (1, 32, 32) and stage1.max() < 6 and stage2.max() < 3
    classifier = F.normalize(torch.randn(4, 32), dim=-1)
    scores = GroupViTSegmenter(model, top_k=4).class_scores(images, classifier)   # every class allowed
    out = model.visual.forward_groups(images)
    groups = F.normalize(model.visual.proj(out.tokens), dim=-1)[0]
    per_group = (model.logit_scale.exp() * groups @ classifier.T).softmax(-1) ** 2
    assert scores.shape == (1, 4, 32, 32)
    assert torch.allclose(scores[0].permute(1, 2, 0), per_group[stage2[0]], atol=1e-5)
    top1 = GroupViTSegmenter(model, top_k=1).class_scores(images, classifier)
    image = F.normalize(model.encode_image(images), dim=-1)
    best = int((image @ classifier.T).argmax())
    assert (top1[0].argmax(0) == best).all() and (top1[0, [c for c in range(4) if c != best]] == 0).all()
    dense = segmenter.dense(images)
    assert dense.shape == (1, 32, 4, 4) and torch.allclose(dense.norm(dim=1), torch.ones(1, 4, 4), atol=1e-5)


def test_checkpoints_describe_themselves_and_load_back(tmp_path) -> None:
    bundle = cd.load_model("tiny-groupvit", device="cpu", init_seed=1)
    path = tmp_path / "gv.safetensors"
    cd.save_weights(bundle.model, path, "tiny-groupvit", model_config=model_config("tiny-groupvit"))
    assert json.loads(read_metadata(path)["clipdense.model_config"])[FAMILY_KEY] == "groupvit"
    for loaded in (cd.load_model(path, device="cpu"), cd.load_model("tiny-groupvit", pretrained=path, device="cpu")):
        assert isinstance(loaded.model, GroupViT) and loaded.name == "tiny-groupvit"
        assert all(torch.equal(v, loaded.model.state_dict()[k]) for k, v in bundle.model.state_dict().items())
    assert bundle.tokenizer(["a red circle"]).shape == (1, 32)
    with pytest.raises(ModelLoadError, match="unknown pretrained tag 'laion' for tiny-groupvit"):
        cd.load_model("tiny-groupvit", pretrained="laion")
    with pytest.raises(ModelLoadError, match=r"unknown GroupViT config keys \['vision_cfg.layers'\]"):
        GroupViTConfig.from_dict({"vision_cfg": {"layers": 3}}, "x.json")
    with pytest.raises(ModelLoadError, match="one entry more than groups"):
        GroupViTConfig.from_dict({"vision_cfg": {"depths": [1, 1], "groups": [4, 2]}}, "x.json")
