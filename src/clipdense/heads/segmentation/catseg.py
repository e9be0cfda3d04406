"""Cat-Seg: open-vocabulary segmentation by aggregating the CLIP image-text cost volume.

    head = CatSegHead(bundle.model, bundle.tokenizer, CatSegConfig(templates="imagenet"))
    logits = head(images, head.text_features(["cat", "dog", "sofa"]))     # (B, 3, 4h, 4w), one per class

Architecture and recipe: ``aggregation`` (the paper's modules); the CLIP attention query / value projections
and the image position table are fine-tuned through ``TunedCLIP`` at ``tuned_lr_scale`` x the head's learning
rate. Trained with per-pixel binary cross-entropy (``objectives.catseg``). Above ``max_classes`` classes each
image keeps the ``max_classes`` with the highest cost (Cat-Seg's way to bound memory on ADE-847 / PC-459);
the others score ``UNSELECTED``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError
from .aggregation import AggregationLayer, CostEmbedding, Decoder, cost_volume
from .common import SegHeadConfig, SegmentationHead

UNSELECTED = -100.0  # logit of a class left out by the top-``max_classes`` selection (probability ~0)


@dataclass
class CatSegConfig(SegHeadConfig):
    """Cat-Seg's architecture (defaults: the paper's ViT-B recipe).

    Args:
        hidden_dim: channels of the embedded cost volume (paper: 128).
        guidance_dim: channels of the projected image / text guidance.
        heads: attention heads of both aggregations.
        window: side of the spatial attention windows, in patches (paper: 12 on a 24 x 24 grid).
        layers: aggregation layers (paper: 2).
        decoder_dims / decoder_guidance_dims: channels of the two upsampling stages and of their CLIP guidance.
        max_classes: classes aggregated per image at most (paper: 256).
    """

    hidden_dim: int = 128
    guidance_dim: int = 128
    heads: int = 4
    window: int = 12
    layers: int = 2
    decoder_dims: list[int] = field(default_factory=lambda: [64, 32])
    decoder_guidance_dims: list[int] = field(default_factory=lambda: [32, 16])
    max_classes: int = 256


def _check(config: CatSegConfig) -> None:
    for name in ("hidden_dim", "guidance_dim", "heads", "window", "layers", "max_classes"):
        if int(getattr(config, name)) < 1:
            raise ConfigError(f"catseg {name} must be >= 1, got {getattr(config, name)}")
    if config.hidden_dim % config.heads:
        raise ConfigError(f"catseg hidden_dim {config.hidden_dim} must be divisible by heads {config.heads}")


class CatSegHead(SegmentationHead):
    """Cost volume -> embedding -> spatial / class aggregation -> guided upsampling -> a logit per class."""

    kind = "segmenter/catseg"
    Config = CatSegConfig

    def __init__(self, clip: nn.Module, tokenizer: Any, config: CatSegConfig,
                 classes: Sequence[str] | None = None) -> None:
        _check(config)
        super().__init__(clip, tokenizer, config, classes)
        c, dim = config, self.facts.output_dim
        self.embed = CostEmbedding(len(self.templates), c.hidden_dim)
        self.image_guide = nn.Linear(dim, c.guidance_dim)
        self.text_guide = nn.Linear(dim, c.guidance_dim)
        self.layers = nn.ModuleList([AggregationLayer(c.hidden_dim, c.guidance_dim, c.heads, c.window)
                                     for _ in range(c.layers)])
        self.decoder = Decoder(c.hidden_dim, self.facts.width, c.decoder_dims, c.decoder_guidance_dims)

    def select_classes(self, dense: torch.Tensor, text: torch.Tensor) -> torch.Tensor | None:
        """(B, K) indices of each image's ``max_classes`` classes with the highest cost (None: keep all)."""
        if text.shape[0] <= self.config.max_classes:
            return None
        score = torch.einsum("bdhw,td->bthw", dense, F.normalize(text.mean(1), dim=-1)).flatten(2).amax(-1)
        return score.topk(self.config.max_classes, dim=1).indices

    def aggregate(self, dense: torch.Tensor, text: torch.Tensor, layers: Sequence[torch.Tensor]) -> torch.Tensor:
        """(B, T, 4h, 4w) logits from the unit-norm dense map (B, D, h, w), text (T, P, D) or (B, T, P, D), and
        the guidance blocks' maps, deepest first."""
        x = self.embed(cost_volume(dense, text))
        image_guide = self.image_guide(dense.permute(0, 2, 3, 1))                    # (B, h, w, G)
        text_guide = self.text_guide(F.normalize(text.mean(-2), dim=-1))             # (T, G) or (B, T, G)
        if text_guide.ndim == 2:
            text_guide = text_guide.expand(dense.shape[0], -1, -1)
        for layer in self.layers:
            x = layer(x, image_guide, text_guide)
        return self.decoder(x, layers)

    def forward(self, images: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """(B, T, 4h, 4w) logits of ``images`` (B, 3, H, W) for ``text`` (T, P, D), h x w the patch grid."""
        if text.shape[1] != len(self.templates):
            raise ConfigError(f"catseg: text embeddings have {text.shape[1]} templates per class; this head was "
                              f"built for {len(self.templates)}")
        out = self.dense(images)
        dense = F.normalize(out.dense.float(), dim=1)
        layers = [m.float() for m in out.layers][::-1]      # deepest first
        chosen = self.select_classes(dense, text)
        if chosen is None:
            return self.aggregate(dense, text, layers)
        picked = self.aggregate(dense, text[chosen], layers)
        full = picked.new_full((dense.shape[0], text.shape[0], *picked.shape[-2:]), UNSELECTED)
        return full.scatter(1, chosen[:, :, None, None].expand_as(picked), picked)

    def probabilities(self, scores: torch.Tensor) -> torch.Tensor:
        """Cat-Seg scores each class on its own (binary cross-entropy): a sigmoid per class."""
        return scores.sigmoid()


CatSegHead.register()
