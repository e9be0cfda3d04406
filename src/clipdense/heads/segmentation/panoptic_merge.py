"""From per-query class probabilities and mask probabilities to panoptic, semantic and instance results.

The open-vocabulary score is FC-CLIP's / ODISE's geometric ensemble: for a seen class ``p_in^(1-a) p_out^a``,
for an unseen one ``p_in^(1-b) p_out^b`` (``p_in`` the head's softmax over the classes, ``p_out`` the CLIP's
mask-pooled softmax; ODISE / FC-CLIP: a = 0.4, b = 0.8), renormalised over the classes and scaled by one minus
the head's "no object" probability, which is kept as the last column. Panoptic merging is Mask2Former's: queries
whose best column is a class with probability above ``object_threshold`` compete per pixel by
``score x mask probability``; a query keeps its pixels only when they are at least ``overlap_threshold`` of its own
mask (probability >= 0.5); thing queries become one segment each, stuff queries of one class merge into one.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..detection.scoring import ensemble_scores


@dataclass(frozen=True)
class Segment:
    """One panoptic segment: ``id`` (its value in ``PanopticResult.ids``), class index, thing or stuff, score,
    and area in pixels."""

    id: int
    label: int
    isthing: bool
    score: float
    area: int


@dataclass
class PanopticResult:
    """One image's panoptic segmentation.

    Args:
        ids: (H, W) int64 segment id per pixel, 0 where no segment is.
        segments: the segments, ids 1..K.
        classes: the class names ``Segment.label`` indexes.
    """

    ids: torch.Tensor
    segments: list[Segment] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)

    def semantic(self, unlabelled: int = -1) -> torch.Tensor:
        """(H, W) class index per pixel (``unlabelled`` where no segment is)."""
        lookup = torch.full((len(self.segments) + 1,), unlabelled, dtype=torch.long)
        for segment in self.segments:
            lookup[segment.id] = segment.label
        return lookup[self.ids.long()]

    def instances(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The thing segments as (K, H, W) bool masks, (K,) labels and (K,) scores."""
        things = [s for s in self.segments if s.isthing]
        masks = torch.stack([self.ids == s.id for s in things]) if things else \
            torch.zeros((0, *self.ids.shape), dtype=torch.bool)
        return (masks, torch.tensor([s.label for s in things], dtype=torch.long),
                torch.tensor([s.score for s in things], dtype=torch.float32))


def open_vocabulary_probabilities(in_logits: torch.Tensor, out_probs: torch.Tensor | None, seen: torch.Tensor,
                                  alpha: float, beta: float) -> torch.Tensor:
    """(Q, C + 1) class probabilities, "no object" last, from the head's logits (Q, C + 1) and the CLIP's
    mask-pooled probabilities (Q, C) (None: the head alone). ``seen``: (C,) bool, the classes the head trained on.
    alpha = beta = 0 is the head's score alone, alpha = beta = 1 the CLIP's alone."""
    void = in_logits.float().softmax(-1)[:, -1:]
    probs = in_logits[:, :-1].float().softmax(-1)
    if out_probs is not None:
        probs = ensemble_scores(probs, out_probs.float(), ~seen.to(probs.device), alpha, beta)
        probs = probs / probs.sum(-1, keepdim=True).clamp_min(1e-12)
    return torch.cat([probs * (1 - void), void], dim=-1)


def merge_panoptic(probs: torch.Tensor, mask_probs: torch.Tensor, isthing: torch.Tensor, object_threshold: float,
                   overlap_threshold: float) -> PanopticResult:
    """Mask2Former's panoptic merging (see the module docstring).

    Args:
        probs: (Q, C + 1) class probabilities, "no object" last.
        mask_probs: (Q, H, W) mask probabilities at the output size.
        isthing: (C,) bool.
        object_threshold: a query with a lower best score is dropped.
        overlap_threshold: a query whose winning pixels are less than this fraction of its own mask is dropped.
    """
    scores, labels = probs.max(-1)
    keep = (labels != probs.shape[-1] - 1) & (scores > object_threshold)
    scores, labels, masks = scores[keep], labels[keep], mask_probs[keep]
    ids = torch.zeros(mask_probs.shape[-2:], dtype=torch.long, device=mask_probs.device)
    if not len(scores):
        return PanopticResult(ids.cpu())
    winner = (scores[:, None, None] * masks).argmax(0)
    stuff_ids: dict[int, int] = {}
    found: list[tuple[int, bool, float]] = []              # (label, isthing, score) of segment id - 1
    for k in range(len(scores)):
        label, own = int(labels[k]), masks[k] >= 0.5
        won = winner == k
        region = won & own
        won_area, own_area = int(won.sum()), int(own.sum())
        if not (won_area and own_area and region.any()) or won_area / own_area < overlap_threshold:
            continue
        thing = bool(isthing[label])
        if not thing and label in stuff_ids:
            segment_id = stuff_ids[label]
            found[segment_id - 1] = (label, thing, max(found[segment_id - 1][2], float(scores[k])))
        else:
            found.append((label, thing, float(scores[k])))
            segment_id = len(found)
            if not thing:
                stuff_ids[label] = segment_id
        ids[region] = segment_id
    areas = torch.bincount(ids.flatten(), minlength=len(found) + 1).tolist()
    segments = [Segment(i + 1, label, thing, score, int(areas[i + 1]))
                for i, (label, thing, score) in enumerate(found)]
    return PanopticResult(ids.cpu(), segments)


def semantic_scores(probs: torch.Tensor, mask_probs: torch.Tensor) -> torch.Tensor:
    """(C, H, W) Mask2Former's semantic inference: sum over queries of class probability x mask probability."""
    return torch.einsum("qc,qhw->chw", probs[:, :-1], mask_probs)


def instance_predictions(probs: torch.Tensor, mask_probs: torch.Tensor, isthing: torch.Tensor,
                         limit: int = 100) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mask2Former's instance inference: the best ``limit`` (query, thing class) pairs; each mask is the query's
    mask > 0.5 and its score the class probability x the mean mask probability inside it.
    Returns (K, H, W) bool masks, (K,) labels, (K,) scores."""
    classes = probs.shape[-1] - 1
    flat = probs[:, :-1].masked_fill(~isthing.to(probs.device)[None], 0).flatten()
    top = flat.topk(min(limit, flat.numel())).indices
    queries, labels = top // classes, top % classes
    masks = mask_probs[queries] > 0.5
    inside = (mask_probs[queries] * masks).flatten(1).sum(1) / masks.flatten(1).sum(1).clamp_min(1)
    scores = flat[top] * inside
    keep = masks.flatten(1).any(1) & (scores > 0)
    return masks[keep], labels[keep], scores[keep]
