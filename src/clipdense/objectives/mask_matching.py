"""Mask2Former's set criterion (Cheng et al., CVPR 2022), written from the paper: each image's queries are matched
one-to-one to its ground-truth segments by the Hungarian algorithm (scipy's ``linear_sum_assignment``) on
``class_weight x (-p(class)) + mask_weight x BCE + dice_weight x dice``, with the mask terms on the same
``points`` uniformly drawn points for prediction and target; the loss is then the class cross-entropy of every
query (unmatched ones against "no object", weighted ``void_weight``) plus BCE + dice of the matched masks on
``points`` points chosen by uncertainty (``oversample`` x as many drawn at random, the ``importance`` fraction
with the least confident logits kept, the rest uniform), each mask term averaged over the batch's segments.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment


@dataclass(frozen=True)
class MatchWeights:
    """Weights of the matching cost and of the loss (Mask2Former: 2, 5, 5, no-object 0.1, 112 x 112 points,
    oversampling 3, importance 0.75)."""

    class_weight: float = 2.0
    mask_weight: float = 5.0
    dice_weight: float = 5.0
    void_weight: float = 0.1
    points: int = 12544
    oversample: float = 3.0
    importance: float = 0.75


def point_sample(masks: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """(N, P) values of masks (N, H, W) at points (N, P, 2) given as (x, y) in [0, 1] (bilinear,
    ``align_corners=False``: the pixel grid's own coordinates)."""
    grid = 2 * points[:, :, None, :] - 1
    return F.grid_sample(masks[:, None].float(), grid, mode="bilinear", align_corners=False)[:, 0, :, 0]


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, count: float) -> torch.Tensor:
    """Sum over masks of 1 - (2 |p t| + 1) / (|p| + |t| + 1), p = sigmoid(logits), divided by ``count``."""
    p = logits.sigmoid()
    dice = (2 * (p * targets).sum(-1) + 1) / (p.sum(-1) + targets.sum(-1) + 1)
    return (1 - dice).sum() / count


def bce_loss(logits: torch.Tensor, targets: torch.Tensor, count: float) -> torch.Tensor:
    """Sum over masks of the mean point BCE, divided by ``count``."""
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(-1).sum() / count


def pairwise_dice(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(Q, T) dice cost of every prediction (Q, P) against every target (T, P)."""
    p = logits.sigmoid()
    return 1 - (2 * p @ targets.T + 1) / (p.sum(-1)[:, None] + targets.sum(-1)[None] + 1)


def pairwise_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(Q, T) mean point BCE of every prediction (Q, P) against every target (T, P)."""
    positive = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none")
    negative = F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="none")
    return (positive @ targets.T + negative @ (1 - targets).T) / logits.shape[-1]


def hungarian(cost: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(query indices, target indices) of the assignment with the least total ``cost`` (Q, T)."""
    rows, cols = linear_sum_assignment(cost.detach().cpu().double().numpy())
    return torch.as_tensor(rows, dtype=torch.long), torch.as_tensor(cols, dtype=torch.long)


def uncertain_points(logits: torch.Tensor, count: int, oversample: float, importance: float) -> torch.Tensor:
    """(N, count, 2) points on masks (N, H, W): the ``importance`` share with logits nearest 0 among
    ``oversample x count`` random ones, the rest uniform."""
    drawn = torch.rand(logits.shape[0], int(count * oversample), 2, device=logits.device)
    uncertainty = -point_sample(logits.detach(), drawn).abs()
    chosen = int(importance * count)
    index = uncertainty.topk(chosen, dim=1).indices
    kept = torch.gather(drawn, 1, index[..., None].expand(-1, -1, 2))
    return torch.cat([kept, torch.rand(logits.shape[0], count - chosen, 2, device=logits.device)], dim=1)


@torch.no_grad()
def match_image(logits: torch.Tensor, masks: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor,
                weights: MatchWeights) -> tuple[torch.Tensor, torch.Tensor]:
    """One image's Hungarian assignment: class logits (Q, C + 1), mask logits (Q, h, w), target labels (T,) and
    masks (T, H, W)."""
    if not len(labels):
        empty = torch.zeros(0, dtype=torch.long)
        return empty, empty
    points = torch.rand(1, weights.points, 2, device=masks.device)
    predicted = point_sample(masks, points.expand(len(masks), -1, -1))
    target = point_sample(targets, points.expand(len(targets), -1, -1))
    cost = -weights.class_weight * logits.float().softmax(-1)[:, labels] \
        + weights.mask_weight * pairwise_bce(predicted.float(), target) \
        + weights.dice_weight * pairwise_dice(predicted.float(), target)
    return hungarian(cost)


def set_loss(logits: torch.Tensor, masks: torch.Tensor, labels: list[torch.Tensor], targets: list[torch.Tensor],
             weights: MatchWeights) -> dict[str, torch.Tensor]:
    """Mask2Former's loss of one prediction: class logits (B, Q, C + 1), mask logits (B, Q, h, w), per image the
    target labels (T_i,) and masks (T_i, H, W). Returns loss_ce, loss_mask, loss_dice (weighted)."""
    void = logits.shape[-1] - 1
    wanted = torch.full(logits.shape[:2], void, dtype=torch.long, device=logits.device)
    picked, goal = [], []
    for b in range(logits.shape[0]):
        rows, cols = match_image(logits[b], masks[b], labels[b], targets[b], weights)
        wanted[b, rows.to(logits.device)] = labels[b][cols.to(labels[b].device)].to(logits.device)
        picked.append(masks[b][rows.to(masks.device)])
        goal.append(targets[b][cols.to(targets[b].device)])
    class_weights = torch.ones(void + 1, device=logits.device)
    class_weights[void] = weights.void_weight
    ce = F.cross_entropy(logits.float().transpose(1, 2), wanted, weight=class_weights)
    predicted, target = torch.cat(picked), torch.cat(goal).float()
    count = max(len(predicted), 1)
    if not len(predicted):
        zero = masks.sum() * 0
        return {"loss_ce": weights.class_weight * ce, "loss_mask": zero, "loss_dice": zero}
    points = uncertain_points(predicted.float(), weights.points, weights.oversample, weights.importance)
    predicted_points = point_sample(predicted, points)
    target_points = point_sample(target, points)
    return {"loss_ce": weights.class_weight * ce,
            "loss_mask": weights.mask_weight * bce_loss(predicted_points, target_points, count),
            "loss_dice": weights.dice_weight * dice_loss(predicted_points, target_points, count)}
