"""PointCLIP's inter-view adapter (Zhang et al., CVPR 2022, Sec. 3.3).

The M views' features of a cloud are concatenated and turned into a global feature (BN -> Linear -> BN -> ReLU);
a second Linear (-> ReLU) maps it back to M per-view adaptation features, mixed into the frozen features with a
residual ratio ``f'_i = ratio * a_i + (1 - ratio) * f_i``, so few-shot training only nudges CLIP's knowledge. Each
adapted view is scored against the class prompts and the views' logits are summed with the view weights.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...config import build_config
from ...errors import ConfigError
from ...models.text import text_classifier
from ..registry import HeadKind, register_head_kind


@dataclass
class InterViewAdapterConfig:
    """The adapter's architecture and the views it reads.

    Args:
        views: views per cloud (10 for few-shot, as the paper; 6 also works).
        projection: ``v1`` or ``v2`` (``clipdense.tasks.points.PointViewSettings``).
        hidden: width of the global feature (0: the embedding width).
        ratio: weight of the adapted feature in the residual mix (0 = zero-shot CLIP).
        templates: prompt set of the class embeddings.
    """

    views: int = 10
    projection: str = "v1"
    hidden: int = 0
    ratio: float = 0.5
    templates: str = "pointclip"


class InterViewAdapter(nn.Module):
    """The adapter head on ``bundle``'s frozen CLIP (kept outside the module tree, never saved)."""

    def __init__(self, bundle: Any, classes: Sequence[str], config: InterViewAdapterConfig | None = None) -> None:
        super().__init__()
        config = config or InterViewAdapterConfig()
        if not classes:
            raise ConfigError("pointclip-adapter needs at least one class")
        if not 0.0 <= config.ratio <= 1.0 or config.views not in (6, 10) or config.hidden < 0:
            raise ConfigError(f"pointclip-adapter: ratio in [0, 1], views 6 or 10, hidden >= 0; got {config.ratio}, "
                              f"{config.views}, {config.hidden}")
        object.__setattr__(self, "bundle", bundle)
        self.config, self.classes = config, list(classes)
        device = next(bundle.model.parameters()).device
        text = text_classifier(bundle, self.classes, config.templates).to(device)
        dim, m = text.shape[1], config.views
        hidden = config.hidden or dim
        self.register_buffer("text", text, persistent=False)
        # cumulative averages (momentum None): a few-shot run is short, and with the default momentum the initial
        # running variance of 1 would outweigh the tiny variance of unit-norm features for hundreds of steps
        self.global_feature = nn.Sequential(nn.BatchNorm1d(m * dim, momentum=None), nn.Linear(m * dim, hidden),
                                            nn.BatchNorm1d(hidden, momentum=None), nn.ReLU())
        self.view_feature = nn.Sequential(nn.Linear(hidden, m * dim), nn.ReLU())
        self.register_buffer("view_weights", torch.ones(m))
        self.to(device)

    def mix(self, features: torch.Tensor) -> torch.Tensor:
        """(B, M, D) frozen view features -> the residual mix ``ratio * adapted + (1 - ratio) * features``."""
        b, m, d = features.shape
        flat = features.reshape(b, m * d)
        adapted = self.view_feature(self.global_feature(flat))
        return (self.config.ratio * adapted + (1 - self.config.ratio) * flat).reshape(b, m, d)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C): the adapted views' scaled cosines with the class prompts, summed with ``view_weights``."""
        views = F.normalize(self.mix(features.to(self.text.device)), dim=-1)
        scale = self.bundle.model.logit_scale.exp().float().detach()
        return torch.einsum("bmc,m->bc", scale * views @ self.text.T, self.view_weights)

    def head_config(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)

    @classmethod
    def from_head_config(cls, config: Mapping[str, Any], bundle: Any, classes: Sequence[str] | None
                         ) -> "InterViewAdapter":
        if not classes:
            raise ConfigError("a pointclip/adapter head needs the class vocabulary it was trained on")
        return cls(bundle, list(classes), build_config(InterViewAdapterConfig, None, dict(config)))


register_head_kind(HeadKind(name="pointclip/adapter", module_type=InterViewAdapter, build=InterViewAdapter.from_head_config,
                            config_of=lambda head: head.head_config(), classes_of=lambda head: list(head.classes)))
