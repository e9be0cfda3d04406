"""CLIP-Adapter (Gao et al., IJCV 2023): residual bottleneck MLPs on the frozen features.

``f' = ratio * A(f) + (1 - ratio) * f`` on image features (and optionally on the text classifier),
with A = Linear(D, D/4) - ReLU - Linear(D/4, D) - ReLU; the ratio keeps most of CLIP's knowledge.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError
from .base import Adapter, AdapterConfig


def bottleneck(dim: int, reduction: int) -> nn.Sequential:
    hidden = max(1, dim // reduction)
    return nn.Sequential(nn.Linear(dim, hidden, bias=False), nn.ReLU(inplace=True),
                         nn.Linear(hidden, dim, bias=False), nn.ReLU(inplace=True))


@dataclass
class ClipAdapterConfig(AdapterConfig):
    """CLIP-Adapter's mixing.

    Args:
        ratio: weight of the adapted image feature (paper: 0.2 on most datasets).
        text_ratio: weight of the adapted text feature; 0 disables the text adapter.
        reduction: bottleneck factor (paper: 4).
    """

    ratio: float = 0.2
    text_ratio: float = 0.0
    reduction: int = 4


class ClipAdapter(Adapter):
    """Feature adapters with residual mixing (``Config``: ``ClipAdapterConfig``)."""

    method = "clip-adapter"
    Config = ClipAdapterConfig
    trained = True

    def __init__(self, bundle: Any, classes: Sequence[str], config: ClipAdapterConfig | None = None) -> None:
        super().__init__(bundle, classes, config)
        ratio, text_ratio, reduction = self.config.ratio, self.config.text_ratio, self.config.reduction
        if not (0.0 <= ratio <= 1.0 and 0.0 <= text_ratio <= 1.0):
            raise ConfigError(f"clip-adapter ratios must be in [0, 1], got {ratio}, {text_ratio}")
        if reduction < 1:
            raise ConfigError(f"clip-adapter reduction must be >= 1, got {reduction}")
        self.ratio, self.text_ratio, self.reduction = ratio, text_ratio, reduction
        dim = self.embed_dim()
        self.image_adapter = bottleneck(dim, reduction).to(self.device)
        self.text_adapter = bottleneck(dim, reduction).to(self.device) if text_ratio > 0 else None

    @staticmethod
    def _mix(adapter: nn.Module, x: torch.Tensor, ratio: float) -> torch.Tensor:
        return F.normalize(ratio * adapter(x) + (1 - ratio) * x, dim=-1)

    def logits(self, features: torch.Tensor, classnames: Sequence[str] | None = None) -> torch.Tensor:
        names = self.resolve_classes(classnames)
        image = self._mix(self.image_adapter, features.to(self.device), self.ratio)
        text = self.zero_shot_weights(names)
        if self.text_adapter is not None:
            text = self._mix(self.text_adapter, text, self.text_ratio)
        return self.logit_scale() * image @ text.T
