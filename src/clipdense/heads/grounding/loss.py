"""GLIP's training targets and losses on an FCOS-style one-stage head.

- Matching (FCOS, Tian et al. 2019, with centre sampling as torchvision's ``FCOS.compute_loss``): a location is a
  candidate for a box when it lies within ``radius`` strides of the box centre (and inside the box), and the box's
  largest side distance from it fits the level's range [4 s, 8 s] (the first level has no lower bound, the last no
  upper one); among candidates the smallest box wins.
- Alignment loss: sigmoid focal loss (alpha 0.25, gamma 2; torchvision's ``sigmoid_focal_loss``) of every
  location-token logit against the positive map row of the location's box (all zeros for background), over real
  tokens only, summed and divided by the number of matched locations (GLIP eq. 2's token-level form).
- Box loss: GIoU of the decoded boxes of matched locations; centerness: BCE against FCOS's
  sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b)); both divided by the matched count.
- GLIPv2's inter-image region-word contrastive loss (Zhang et al. 2022): the same focal loss over every region of
  the batch against every prompt's tokens, computed on the features before deep fusion (fused features belong to
  one image-text pair); other images' phrases are negatives unless they are the same words.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torchvision.ops import generalized_box_iou_loss, sigmoid_focal_loss


def location_boxes(sizes: Sequence[tuple[int, int]], strides: Sequence[int], device: torch.device) -> torch.Tensor:
    """(N, 4) one stride-sized box centred on every location of every level (row-major per level), as FCOS's
    anchors: the reference its regression is normalised by."""
    out = []
    for (h, w), stride in zip(sizes, strides):
        ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
        cx, cy = (xs.flatten() + 0.5) * stride, (ys.flatten() + 0.5) * stride
        half = stride / 2
        out.append(torch.stack([cx - half, cy - half, cx + half, cy + half], dim=1).float())
    return torch.cat(out)


def match_locations(anchors: torch.Tensor, counts: Sequence[int], strides: Sequence[int], boxes: torch.Tensor,
                    radius: float) -> torch.Tensor:
    """(N,) index into ``boxes`` of each location's box, -1 for background (see the module docstring)."""
    if len(boxes) == 0:
        return torch.full((len(anchors),), -1, dtype=torch.long, device=anchors.device)
    centres = (anchors[:, :2] + anchors[:, 2:]) / 2                                  # (N, 2)
    stride = torch.cat([torch.full((n,), float(s), device=anchors.device) for n, s in zip(counts, strides)])
    box_centres = (boxes[:, :2] + boxes[:, 2:]) / 2                                  # (G, 2)
    near = (centres[:, None, :] - box_centres[None]).abs().max(-1).values < radius * stride[:, None]
    ltrb = torch.cat([centres[:, None, :] - boxes[None, :, :2], boxes[None, :, 2:] - centres[:, None, :]], dim=-1)
    inside = ltrb.min(-1).values > 0
    reach = ltrb.max(-1).values
    lower = torch.cat([torch.full((n,), 0.0 if i == 0 else 4.0 * s, device=anchors.device)
                       for i, (n, s) in enumerate(zip(counts, strides))])
    upper = torch.cat([torch.full((n,), float("inf") if i == len(counts) - 1 else 8.0 * s, device=anchors.device)
                       for i, (n, s) in enumerate(zip(counts, strides))])
    fits = (reach > lower[:, None]) & (reach <= upper[:, None])
    candidate = near & inside & fits
    area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))[None].expand_as(candidate)
    area = torch.where(candidate, area, torch.full_like(area, float("inf")))
    best, index = area.min(dim=1)
    return torch.where(torch.isfinite(best), index, torch.full_like(index, -1))


def centerness_target(anchors: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """(K,) FCOS centerness of each location centre (``anchors``) inside its box (``boxes``), both (K, 4)."""
    centres = (anchors[:, :2] + anchors[:, 2:]) / 2
    left_right = torch.stack([centres[:, 0] - boxes[:, 0], boxes[:, 2] - centres[:, 0]], dim=1)
    top_bottom = torch.stack([centres[:, 1] - boxes[:, 1], boxes[:, 3] - centres[:, 1]], dim=1)
    ratio = (left_right.min(1).values / left_right.max(1).values.clamp_min(1e-6)) * \
        (top_bottom.min(1).values / top_bottom.max(1).values.clamp_min(1e-6))
    return ratio.clamp_min(0).sqrt()


def token_focal_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, alpha: float,
                     gamma: float) -> torch.Tensor:
    """Sum of the sigmoid focal loss of (..., L) location-token ``logits`` vs ``targets`` over real tokens
    (``mask`` (..., L) True) — the caller divides by the matched count."""
    loss = sigmoid_focal_loss(logits.float(), targets.float(), alpha=alpha, gamma=gamma, reduction="none")
    return (loss * mask.to(loss.dtype)).sum()


def box_losses(pred: torch.Tensor, target: torch.Tensor, centerness: torch.Tensor, anchors: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """(GIoU loss sum, centerness BCE sum) over matched locations: decoded ``pred`` vs ``target`` boxes (K, 4)."""
    if len(pred) == 0:
        zero = pred.sum() * 0 + centerness.sum() * 0
        return zero, zero
    giou = generalized_box_iou_loss(pred.float(), target.float(), reduction="sum")
    bce = F.binary_cross_entropy_with_logits(centerness.float(), centerness_target(anchors, target),
                                             reduction="sum")
    return giou, bce


# ------------------------------------------------------------------ GLIPv2's inter-image region-word contrastive loss
def inter_image_logits(regions: torch.Tensor, tokens: torch.Tensor, bias: torch.Tensor, scale: torch.Tensor | float
                       ) -> torch.Tensor:
    """(B, N, B, L) ``scale * cos(region n of image i, token t of prompt j) + bias[j, t]``: every region of the batch
    against every prompt's tokens (``regions`` (B, N, D), ``tokens`` (B, L, D), ``bias`` (B, L))."""
    cosine = torch.einsum("bnd,cld->bncl", F.normalize(regions, dim=-1), F.normalize(tokens, dim=-1))
    return scale * cosine + bias[None, None]


def inter_image_targets(ids: torch.Tensor, own: torch.Tensor, positives: Sequence[torch.Tensor]) -> torch.Tensor:
    """(B, N, B, L) targets of ``inter_image_logits``: a region's own prompt row is ``own`` (B, N, L) (its box's
    positive-map row); in another image's prompt, the tokens of a boxed phrase with the same token ids as the region's
    phrase are positive (the same words name the same thing), every other token negative.
    ``positives[j]``: (K_j, L) the positive rows of image j's boxes."""
    batch, count, length = own.shape
    out = torch.zeros(batch, count, batch, length, dtype=own.dtype, device=own.device)
    rows_by_key = [{tuple(ids[j][row > 0].tolist()): row for row in positives[j].to(own.device)}
                   for j in range(batch)]
    for i in range(batch):
        out[i, :, i] = own[i]
        for n in torch.nonzero(own[i].sum(-1) > 0).flatten().tolist():
            key = tuple(ids[i][own[i, n] > 0].tolist())
            for j in range(batch):
                if j != i and key in rows_by_key[j]:
                    out[i, n, j] = rows_by_key[j][key].to(out.dtype)
    return out
