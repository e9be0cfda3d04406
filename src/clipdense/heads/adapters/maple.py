"""MaPLe (Khattak et al., CVPR 2023): multi-modal prompts in the first J blocks of both towers.

Text prompts: CoOp's context at the input plus new learned context entering text blocks 1..J-1.
Vision prompts: n tokens entering vision blocks 0..J-1, each *coupled* to the text prompt of the
same depth by its own linear map (text width -> vision width), so the two towers adapt together.
Everything is installed with hooks on open_clip's blocks (see prompts.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError
from .coop import CoOp, PromptConfig
from .prompts import text_tower, vision_blocks, vision_prompt_hooks


@dataclass
class MaPLeConfig(PromptConfig):
    """MaPLe's prompts.

    Args:
        n_ctx: prompt tokens per layer (paper: 2).
        depth: J, how many leading blocks of each tower get prompts (paper: 9 of 12).
    """

    n_ctx: int = 2
    depth: int = 2


class MaPLe(CoOp):
    """Multi-modal prompt learning (``Config``: ``MaPLeConfig``)."""

    method = "maple"
    Config = MaPLeConfig
    needs_pixels = True

    def __init__(self, bundle: Any, classes: Sequence[str], config: MaPLeConfig | None = None) -> None:
        super().__init__(bundle, classes, config)
        depth = self.config.depth
        text_depth, vision_depth = len(text_tower(self.clip).transformer.resblocks), len(vision_blocks(self.clip))
        if not 1 <= depth <= min(text_depth, vision_depth):
            raise ConfigError(f"maple depth must be in 1..{min(text_depth, vision_depth)} for this model "
                              f"({text_depth} text / {vision_depth} vision blocks), got {depth}")
        self.depth = depth
        text_width, vision_width = self.ctx.shape[-1], self.clip.visual.transformer.width
        self.deep_text = nn.Parameter(torch.randn(depth - 1, self.n_ctx, text_width, device=self.device) * 0.02)
        self.couplers = nn.ModuleList(nn.Linear(text_width, vision_width) for _ in range(depth)).to(self.device)

    def text_prompts(self) -> list[torch.Tensor]:
        """(n, text width) prompt per depth 0..J-1."""
        return [self.ctx, *self.deep_text]

    def vision_prompts(self) -> list[torch.Tensor]:
        """(n, vision width) prompt per depth, coupled from the text prompt of that depth."""
        return [coupler(prompt) for coupler, prompt in zip(self.couplers, self.text_prompts())]

    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        with vision_prompt_hooks(self.clip, self.vision_prompts()):
            return F.normalize(self.clip.encode_image(pixels.to(self.device)).float(), dim=-1)

    def text_features(self, classnames: Sequence[str]) -> torch.Tensor:
        p = self.prompts(classnames)
        count = len(classnames)
        deep = [d[None].expand(count, -1, -1) for d in self.deep_text]
        return self.encode_prompts(p.tokens, p.ctx_mask, self.context_for(classnames), deep)
