"""Cat-Seg training: per-pixel binary cross-entropy of every class's logit (Cho et al., CVPR 2024).

``clipdense train --objective catseg --model SPEC --pretrained ... --data SEMANTIC_DATA``: the head
(``heads.segmentation.CatSegHead``) trains at ``--lr`` (recipe: AdamW 2e-4), the CLIP attention query / value
projections and image position table through its deltas at ``tuned_lr_scale`` (0.01) x that, the rest of the
backbone frozen. The run exports a ``segmenter/catseg`` head bound to the backbone's fingerprint. Options:
``SegTrainingOptions`` (vocabulary, jitter) and ``CatSegConfig`` (architecture), as ``--objective-arg KEY=VALUE``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from ..heads.segmentation import CatSegConfig, CatSegHead
from .seghead import SegHeadObjective, SegTrainingOptions


@dataclass
class CatSegOptions(SegTrainingOptions, CatSegConfig):
    """``--objective-arg`` keys of catseg: the training options and the head's architecture."""


def binary_cross_entropy(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean BCE over labelled pixels and every class: the pixel's class is 1, the others 0."""
    valid = labels >= 0
    target = F.one_hot(labels.clamp_min(0), scores.shape[1]).permute(0, 3, 1, 2).to(scores.dtype)
    per_pixel = F.binary_cross_entropy_with_logits(scores, target, reduction="none").mean(1)
    return (per_pixel * valid).sum() / valid.sum().clamp_min(1)


class CatSegObjective(SegHeadObjective):
    """Cat-Seg on a CLIP backbone (see the module docstring)."""

    name: ClassVar[str] = "catseg"
    Options: ClassVar[type] = CatSegOptions
    head_class: ClassVar[type] = CatSegHead

    def loss(self, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return binary_cross_entropy(scores, labels)
