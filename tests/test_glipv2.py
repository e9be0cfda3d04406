"""GLIPv2's inter-image region-word contrastive loss (issue 26): the batch-wide targets and the loss by hand, and
the objective ``glipv2`` = ``glip`` + that loss on world grounding data."""
from __future__ import annotations

import math

import pytest
import torch

from clipdense.data.readers import open_data
from clipdense.errors import ConfigError
from clipdense.heads.grounding.loss import inter_image_logits, inter_image_targets, token_focal_loss
from clipdense.objectives import build_objective, objective_options
from glip_toy import small_world

TINY = {"channels": 32, "layers": 1, "fusion_dim": 32, "fusion_heads": 4, "layer_scale": 0.1, "image_size": 64}


def _focal(logit: float, target: float, alpha: float = 0.25, gamma: float = 2.0) -> float:
    p = 1 / (1 + math.exp(-logit))
    if target:
        return alpha * (1 - p) ** gamma * -math.log(p)
    return (1 - alpha) * p ** gamma * -math.log(1 - p)


def test_inter_image_targets_make_the_same_words_positive_and_other_phrases_negative():
    ids = torch.tensor([[49406, 5, 6, 49407, 0], [49406, 7, 5, 6, 49407]])
    own = torch.zeros(2, 3, 5)
    own[0, 0, [1, 2]] = 1            # image 0, region 0: phrase (5, 6)
    own[1, 2, [1]] = 1               # image 1, region 2: phrase (7,)
    positives = [own[0, :1], torch.tensor([[0.0, 1, 0, 0, 0], [0.0, 0, 1, 1, 0]])]   # image 1 boxes (7,) and (5, 6)
    goal = inter_image_targets(ids, own, positives)
    assert goal.shape == (2, 3, 2, 5)
    assert goal[0, 0, 0].tolist() == [0, 1, 1, 0, 0] and goal[0, 0, 1].tolist() == [0, 0, 1, 1, 0]
    assert goal[1, 2, 1].tolist() == [0, 1, 0, 0, 0] and goal[1, 2, 0].sum() == 0   # (7,) is not in prompt 0
    assert goal[0, 1].sum() == 0 and goal[1, 0].sum() == 0                           # background regions


def test_inter_image_loss_equals_a_hand_computed_case():
    regions = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])                  # one region per image
    tokens = torch.tensor([[[2.0, 0.0], [0.0, 1.0]], [[0.0, 3.0], [1.0, 0.0]]])
    mask = torch.tensor([[True, False], [True, True]])                    # prompt 0's second token is padding
    logits = inter_image_logits(regions, tokens, torch.zeros(2, 2), 1.0)
    assert logits[0, 0].tolist() == [[1.0, 0.0], [0.0, 1.0]] and logits[1, 0].tolist() == [[0.0, 1.0], [1.0, 0.0]]
    goal = torch.zeros(2, 1, 2, 2)
    goal[0, 0, 0, 0] = goal[0, 0, 1, 0] = 1     # region 0: its own token 0 and image 1's token 0 (same words)
    goal[1, 0, 1, 1] = 1                        # region 1: only its own token 1
    loss = token_focal_loss(logits, goal, mask[None, None].expand_as(logits), 0.25, 2.0)
    expected = (_focal(1, 1) + _focal(0, 1) + _focal(1, 0)       # region 0 vs prompts 0 (one real token) and 1
                + _focal(0, 0) + _focal(1, 0) + _focal(0, 1))    # region 1 vs prompts 0 and 1
    assert loss.item() == pytest.approx(expected, rel=1e-5)


@pytest.fixture(scope="module")
def grounded_world(tmp_path_factory):
    return small_world(tmp_path_factory.mktemp("glipv2-world"), 6, 2)


def test_glipv2_is_glip_plus_the_weighted_inter_image_loss(bundle, grounded_world):
    reader, _, info = open_data(str(grounded_world), needs={"boxes", "phrases"})
    items = [i for i in range(len(reader)) if len(reader[i].phrases)][:3]
    losses = {}
    for weight in (0.0, 1.0, 2.0):
        torch.manual_seed(0)
        objective = build_objective("glipv2", bundle, objective_options("glipv2", {**TINY, "inter_weight": weight}),
                                    info)
        transform = objective.sample_transform()
        batch = objective.collate([transform(reader[i], torch.Generator().manual_seed(i)) for i in items])
        losses[weight] = objective(batch)
    assert "loss_inter" not in losses[0.0]
    assert float(losses[1.0]["loss_inter"]) > 0
    assert float(losses[2.0]["loss_inter"]) == pytest.approx(2 * float(losses[1.0]["loss_inter"]), rel=1e-5)
    total = {w: float(out["loss"].detach()) for w, out in losses.items()}
    assert total[1.0] == pytest.approx(total[0.0] + float(losses[1.0]["loss_inter"]), rel=1e-5)
    losses[1.0]["loss"].backward()
    torch.manual_seed(0)
    glip = build_objective("glip", bundle, objective_options("glip", TINY), info)
    batch = glip.collate([glip.sample_transform()(reader[i], torch.Generator().manual_seed(i)) for i in items])
    assert float(glip(batch)["loss"].detach()) == pytest.approx(total[0.0], rel=1e-5)


def test_glipv2_refuses_a_negative_weight():
    with pytest.raises(ConfigError, match="inter_weight"):
        build_objective("glipv2", None, {"inter_weight": -1.0})
