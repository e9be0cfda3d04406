"""CoCoOp (Zhou et al., CVPR 2022): CoOp whose context is shifted per image by a small Meta-Net.

The shift conditions the prompt on the input, which is what lets it generalise beyond the base
classes better than CoOp's static context (measured in docs/results/few-shot.md, not assumed).
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .coop import CoOp, PromptConfig


class CoCoOp(CoOp):
    """Conditional context optimisation (unified context + Meta-Net Linear-ReLU-Linear, 16x bottleneck)."""

    method = "cocoop"
    Config = PromptConfig

    def __init__(self, bundle: Any, classes: Sequence[str], config: PromptConfig | None = None) -> None:
        super().__init__(bundle, classes, config)
        dim, width = self.embed_dim(), self.ctx.shape[-1]
        hidden = max(1, dim // 16)
        self.meta_net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(inplace=True),
                                      nn.Linear(hidden, width)).to(self.device)

    def logits(self, features: torch.Tensor, classnames: Sequence[str] | None = None) -> torch.Tensor:
        """Each image gets its own prompts: B x C text forwards (the method's known cost)."""
        names = self.resolve_classes(classnames)
        p = self.prompts(names)
        features = features.to(self.device)
        batch, classes = len(features), len(names)
        ctx = self.ctx[None] + self.meta_net(features)[:, None]               # (B, n, width)
        values = ctx[:, None].expand(batch, classes, -1, -1).reshape(batch * classes, *ctx.shape[1:])
        text = self.encode_prompts(p.tokens.repeat(batch, 1), p.ctx_mask.repeat(batch, 1), values)
        text = F.normalize(text.reshape(batch, classes, -1), dim=-1)
        return self.logit_scale() * torch.einsum("bd,bcd->bc", features, text)
