"""A feature pyramid from a plain ViT: token maps of several blocks, all at the patch stride, become maps at
strides 4/8/16/32 (two stride-2 transposed convs, one, identity, a max-pool: F-ViT's ``fpn1..fpn4``, as in
ViTDet), then torchvision's ``FeaturePyramidNetwork`` with an extra max-pool level for the RPN.

A patch size that is not a power of two (ViT-L/14) is resampled to the nearest one first, because torchvision's
``MultiScaleRoIAlign`` and ``AnchorGenerator`` infer power-of-two strides from the map sizes.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from .config import power_of_two


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 32 groups (batch statistics are useless at detection batch sizes)."""
    return nn.GroupNorm(math.gcd(32, channels), channels)


def level_op(width: int, ratio: float) -> nn.Module:
    """Patch-stride map -> ``ratio`` x that stride: transposed convs up (GroupNorm + GELU between), identity,
    or a max-pool down."""
    if ratio == 1:
        return nn.Identity()
    if ratio > 1:
        return nn.MaxPool2d(int(ratio), int(ratio))
    ups = int(round(math.log2(1 / ratio)))
    layers: list[nn.Module] = []
    for index in range(ups):
        layers.append(nn.ConvTranspose2d(width, width, 2, 2))
        if index < ups - 1:
            layers += [group_norm(width), nn.GELU()]
    return nn.Sequential(*layers)


class ViTPyramid(nn.Module):
    """Block token maps (all at the patch stride) -> FPN maps named '0'.. and 'pool'.

    Args:
        width: channels of the block maps (the tower's token width).
        patch_size: the tower's patch side in pixels.
        strides: output strides, one per tap, increasing powers of two.
        fpn_channels: channels of every output map (``out_channels``, as torchvision backbones declare).
    """

    def __init__(self, width: int, patch_size: int, strides: Sequence[int], fpn_channels: int) -> None:
        super().__init__()
        self.base = power_of_two(patch_size)
        self.strides = [int(s) for s in strides]
        self.levels = nn.ModuleList(level_op(width, s / self.base) for s in self.strides)
        self.fpn = FeaturePyramidNetwork([width] * len(self.strides), fpn_channels, extra_blocks=LastLevelMaxPool())
        self.out_channels = fpn_channels

    def forward(self, taps: Sequence[torch.Tensor], image_size: tuple[int, int]) -> "OrderedDict[str, torch.Tensor]":
        """``taps``: one (B, width, h, w) map per stride; ``image_size``: the (padded) input's (H, W)."""
        grid = (image_size[0] // self.base, image_size[1] // self.base)
        maps: OrderedDict[str, torch.Tensor] = OrderedDict()
        for index, (tap, level) in enumerate(zip(taps, self.levels)):
            if tuple(tap.shape[-2:]) != grid:
                tap = F.interpolate(tap, size=grid, mode="bilinear", align_corners=False)
            maps[str(index)] = level(tap)
        return self.fpn(maps)
