"""Mask2Former's set criterion (objectives/mask_matching.py) against hand-computed cases: the Hungarian assignment
on a hand-made cost matrix, point sampling on pixel centres, dice and BCE on hand-computed masks, and a matching
that must pair each query with the target it predicts."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from clipdense.objectives.mask_matching import (MatchWeights, bce_loss, dice_loss, hungarian, match_image,
                                                pairwise_bce, pairwise_dice, point_sample, set_loss)


def test_hungarian_finds_the_cheapest_assignment_of_a_hand_made_matrix() -> None:
    cost = torch.tensor([[4.0, 1.0, 3.0], [2.0, 0.0, 5.0], [3.0, 2.0, 2.0]])
    rows, cols = hungarian(cost)          # the 6 permutations cost 6, 11, 5, 9, 6, 7: (0,1), (1,0), (2,2) = 5
    assert dict(zip(rows.tolist(), cols.tolist())) == {0: 1, 1: 0, 2: 2}
    assert float(cost[rows, cols].sum()) == 5.0


def test_hungarian_leaves_extra_queries_unmatched() -> None:
    cost = torch.tensor([[9.0, 9.0], [1.0, 8.0], [7.0, 0.5], [2.0, 3.0]])   # 4 queries, 2 targets
    rows, cols = hungarian(cost)
    assert dict(zip(rows.tolist(), cols.tolist())) == {1: 0, 2: 1}


def test_point_sample_reads_pixel_centres() -> None:
    mask = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    points = torch.tensor([[[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75], [0.5, 0.25]]])   # (x, y)
    assert torch.allclose(point_sample(mask, points), torch.tensor([[1.0, 2.0, 3.0, 4.0, 1.5]]))


def test_dice_and_bce_on_hand_computed_masks() -> None:
    logits = torch.zeros(1, 4)                             # p = 0.5 everywhere
    target = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    assert dice_loss(logits, target, 1) == pytest.approx(1 - (2 * 1 + 1) / (2 + 2 + 1))        # 0.4
    assert bce_loss(logits, target, 1) == pytest.approx(math.log(2))
    sure = torch.tensor([[20.0, 20.0, -20.0, -20.0]])      # right and confident: both ~0
    assert dice_loss(sure, target, 1) == pytest.approx(0.0, abs=1e-6)
    assert bce_loss(sure, target, 1) == pytest.approx(0.0, abs=1e-6)
    wrong = -sure                                          # confidently inverted: dice 1 - 1/5, bce ~20
    assert dice_loss(wrong, target, 1) == pytest.approx(1 - 1 / 5, abs=1e-6)
    assert bce_loss(wrong, target, 1) == pytest.approx(20.0, abs=1e-6)
    two = torch.cat([logits, sure])                        # summed over masks, divided by the count given
    assert dice_loss(two, target.expand(2, -1), 4) == pytest.approx(0.4 / 4, abs=1e-6)


def test_pairwise_costs_equal_the_losses_of_each_pair() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 50, generator=generator)
    targets = (torch.rand(4, 50, generator=generator) > 0.5).float()
    dice, bce = pairwise_dice(logits, targets), pairwise_bce(logits, targets)
    for q in range(3):
        for t in range(4):
            assert dice[q, t] == pytest.approx(float(dice_loss(logits[q:q + 1], targets[t:t + 1], 1)), abs=1e-5)
            expected = F.binary_cross_entropy_with_logits(logits[q], targets[t])
            assert bce[q, t] == pytest.approx(float(expected), abs=1e-5)


def _squares() -> tuple[torch.Tensor, torch.Tensor]:
    """Two target squares in a 16 x 16 image: top-left and bottom-right quarters."""
    targets = torch.zeros(2, 16, 16)
    targets[0, :8, :8] = 1
    targets[1, 8:, 8:] = 1
    return targets, torch.tensor([1, 0])


def test_matching_pairs_each_query_with_the_target_it_predicts() -> None:
    torch.manual_seed(0)
    targets, labels = _squares()
    masks = torch.full((3, 8, 8), -10.0)                  # predictions at a quarter of the target's resolution
    masks[2, :4, :4] = 10                                 # query 2 draws target 0, query 0 target 1
    masks[0, 4:, 4:] = 10
    logits = torch.zeros(3, 3)                            # classes uninformative
    rows, cols = match_image(logits, masks, labels, targets, MatchWeights(points=400))
    assert dict(zip(rows.tolist(), cols.tolist())) == {2: 0, 0: 1}


def _loss(logits: torch.Tensor, masks: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor) -> dict:
    torch.manual_seed(0)                                  # the same sampled points for every call
    return {k: float(v) for k, v in set_loss(logits, masks, [labels], [targets], MatchWeights(points=256)).items()}


def test_set_loss_rewards_the_right_masks_and_classes_follow_the_match() -> None:
    targets, labels = _squares()
    masks = torch.full((1, 3, 16, 16), -30.0)
    masks[0, 2][targets[0] > 0] = 30
    masks[0, 0][targets[1] > 0] = 30
    logits = torch.full((1, 3, 3), -30.0)                 # columns: class 0, class 1, no object
    logits[0, 2, 1] = logits[0, 0, 0] = logits[0, 1, 2] = 30
    perfect = _loss(logits, masks, labels, targets)
    empty = _loss(logits, torch.full_like(masks, -30.0), labels, targets)
    assert perfect["loss_ce"] < 1e-3
    # points sit where the target is soft (square edges: bilinear) by design, so even a perfect mask pays a little
    assert perfect["loss_dice"] < 0.2 * empty["loss_dice"] and perfect["loss_mask"] < 0.2 * empty["loss_mask"]
    swapped = logits.clone()
    swapped[0, 2, 1], swapped[0, 2, 0] = -30, 30          # query 2's class wrong: only the class term grows
    worse = _loss(swapped, masks, labels, targets)
    assert worse["loss_ce"] > 1 and worse["loss_dice"] == pytest.approx(perfect["loss_dice"])
    # one query off by 60 nats; CE weighted by class (1, 1, "no object" 0.1) and normalised by the weights' sum;
    # class_weight 2
    assert worse["loss_ce"] == pytest.approx(2.0 * 60 / (1 + 1 + 0.1), rel=1e-3)
