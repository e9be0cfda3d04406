"""LSeg: a dense image encoder whose pixel embeddings are matched to frozen text embeddings.

Li et al., "Language-driven Semantic Segmentation", ICLR 2022. Each pixel gets an embedding in CLIP's joint
space; its score for a class is the scaled dot product with the class's text embedding (prompt-averaged,
frozen); training is per-pixel cross-entropy over the training label set. Spatial regularisation blocks
(the paper's depthwise and bottleneck blocks) then filter the pixel-text score maps: one 3x3 kernel shared by
every class's map (so any label set works at test time), the bottleneck variant adding the max over classes.

Here the dense image encoder is the backbone's dense map plus a small upsampling decoder fed by two
intermediate CLIP blocks (in place of the paper's DPT on a ViT-L); the image tower's attention query / value
projections and position table are fine-tuned at ``tuned_lr_scale`` (the paper trains the whole image
encoder; a partial fine-tune keeps the head a head and its file small).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError
from .common import SegHeadConfig, SegmentationHead


@dataclass
class LSegConfig(SegHeadConfig):
    """LSeg's architecture.

    Args:
        features: channels of the upsampling decoder.
        blocks: spatial regularisation blocks applied to the score maps (0 = none).
        block: which block, ``bottleneck`` or ``depthwise`` (``SPATIAL_BLOCKS``).
        tune_text: LSeg keeps the text encoder frozen (default off).
    """

    features: int = 64
    blocks: int = 2
    block: str = "bottleneck"
    tune_text: bool = False


class DepthwiseBlock(nn.Module):
    """One 3x3 kernel applied to every class's score map (shared, so the label set can change), then an
    activation unless it is the last block. Starts as the identity so an untrained block passes scores on."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0, 0, 1, 1] = 1.0
            self.conv.bias.zero_()
        self.act = nn.LeakyReLU(0.1)

    def filtered(self, scores: torch.Tensor) -> torch.Tensor:
        return self.conv(scores.flatten(0, 1)[:, None]).reshape(scores.shape)

    def forward(self, scores: torch.Tensor, activate: bool) -> torch.Tensor:
        out = self.filtered(scores)
        return self.act(out) if activate else out


class BottleneckBlock(DepthwiseBlock):
    """The depthwise block plus the maximum over the classes at each pixel."""

    def forward(self, scores: torch.Tensor, activate: bool) -> torch.Tensor:
        out = self.filtered(scores) + scores.amax(dim=1, keepdim=True)
        return self.act(out) if activate else out


SPATIAL_BLOCKS: dict[str, type[DepthwiseBlock]] = {"depthwise": DepthwiseBlock, "bottleneck": BottleneckBlock}


class ResidualConv(nn.Module):
    """x + conv(relu(conv(relu(x)))): DPT's residual convolution unit."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(dim, dim, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(dim, dim, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class FusionStage(nn.Module):
    """x2 upsampling fused with an intermediate CLIP block brought to the new size (transposed conv)."""

    def __init__(self, width: int, features: int, scale: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.guide = nn.ConvTranspose2d(width, features, kernel_size=scale, stride=scale)
        self.refine = ResidualConv(features)

    def forward(self, x: torch.Tensor, layer: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        guide = self.guide(self.norm(layer.permute(0, 2, 3, 1)).permute(0, 3, 1, 2))
        if guide.shape[-2:] != x.shape[-2:]:
            guide = F.interpolate(guide, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.refine(x + guide)


class LSegHead(SegmentationHead):
    """Dense map -> guided x4 upsampling -> pixel embeddings -> scaled cosine with text -> regularisation."""

    kind = "segmenter/lseg"
    Config = LSegConfig

    def __init__(self, clip: nn.Module, tokenizer: Any, config: LSegConfig,
                 classes: Sequence[str] | None = None) -> None:
        if config.block not in SPATIAL_BLOCKS:
            raise ConfigError(f"lseg block must be one of {sorted(SPATIAL_BLOCKS)}, got {config.block!r}")
        if config.features < 1 or config.blocks < 0:
            raise ConfigError(f"lseg features must be >= 1 and blocks >= 0, got {config.features}, {config.blocks}")
        super().__init__(clip, tokenizer, config, classes)
        dim, width = self.facts.output_dim, self.facts.width
        self.reduce = nn.Conv2d(dim, config.features, 1)
        self.stages = nn.ModuleList([FusionStage(width, config.features, 2), FusionStage(width, config.features, 4)])
        self.out = nn.Conv2d(config.features, dim, 1)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.regularise = nn.ModuleList([SPATIAL_BLOCKS[config.block]() for _ in range(config.blocks)])

    def pixel_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        """(B, D, 4h, 4w) unit-norm pixel embeddings in the joint space."""
        out = self.dense(images)
        x = self.reduce(F.normalize(out.dense.float(), dim=1))
        for stage, layer in zip(self.stages, [m.float() for m in out.layers][::-1]):   # deepest first
            x = stage(x, layer)
        return F.normalize(self.out(x), dim=1)

    def forward(self, images: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """(B, T, 4h, 4w) class scores; ``text`` (T, P, D) is averaged over its templates."""
        labels = F.normalize(text.mean(1), dim=-1)
        scores = self.logit_scale.exp() * torch.einsum("bdhw,td->bthw", self.pixel_embeddings(images), labels)
        for index, block in enumerate(self.regularise):
            scores = block(scores, activate=index < len(self.regularise) - 1)
        return scores

    def probabilities(self, scores: torch.Tensor) -> torch.Tensor:
        """LSeg scores classes against each other (cross-entropy): a softmax over the classes."""
        return scores.softmax(dim=1)


LSegHead.register()
