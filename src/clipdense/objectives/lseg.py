"""LSeg training: per-pixel cross-entropy over the training label set (Li et al., ICLR 2022).

``clipdense train --objective lseg --model SPEC --pretrained ... --data SEMANTIC_DATA``: the pixel encoder's
decoder and spatial regularisation blocks train at ``--lr``, the image tower's attention query / value projections
and position table through the head's deltas at ``tuned_lr_scale`` x that; the text tower stays frozen. The run
exports a ``segmenter/lseg`` head. Options: ``SegTrainingOptions`` and ``LSegConfig``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from ..heads.segmentation import LSegConfig, LSegHead
from .seghead import IGNORE, SegHeadObjective, SegTrainingOptions


@dataclass
class LSegOptions(SegTrainingOptions, LSegConfig):
    """``--objective-arg`` keys of lseg: the training options and the head's architecture."""


class LSegObjective(SegHeadObjective):
    """LSeg on a CLIP backbone (see the module docstring)."""

    name: ClassVar[str] = "lseg"
    Options: ClassVar[type] = LSegOptions
    head_class: ClassVar[type] = LSegHead

    def loss(self, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over labelled pixels (0 for a batch without any)."""
        total = F.cross_entropy(scores, labels, ignore_index=IGNORE, reduction="sum")
        return total / (labels != IGNORE).sum().clamp_min(1)
