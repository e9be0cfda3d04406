"""Dense forward of CLIP image towers: patch features in the joint image-text space, any input size,
and the raw token maps of any blocks.

Only the last block changes between modes (``dense_modes``); the class token keeps the block's
ordinary attention, so ``image_embed`` always equals ``model.encode_image``. Tower families (open_clip
ViT, timm EVA02, timm ViT / SigLIP) are adapters in ``towers``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .dense_modes import DENSE_MODES, DenseMode, neighbourhood_bias, resolve_mode
from .positions import interpolate_pos_embed
from .towers import TowerFacts, tower_facts, tower_of

__all__ = ["DENSE_MODES", "DenseMode", "DenseOutput", "TowerFacts", "dense_forward", "encode_dense",
           "interpolate_pos_embed", "neighbourhood_bias", "patch_grid", "tower_facts"]


@dataclass
class DenseOutput:
    """One pass of ``dense_forward``, all unnormalised.

    Attributes:
        dense: (B, D, h, w) patch features in the joint space (D = ``tower_facts(model).output_dim``).
        image_embed: (B, D) the model's own image embedding.
        layers: one (B, width, h, w) map per requested block, in the order asked: raw block outputs
            (patch tokens before the final norm and projection); empty when no layers were asked.
    """

    dense: torch.Tensor
    image_embed: torch.Tensor
    layers: tuple[torch.Tensor, ...] = field(default_factory=tuple)


def _check_images(images: torch.Tensor, patch: tuple[int, int]) -> None:
    if images.ndim != 4 or images.shape[1] != 3:
        raise ConfigError(f"images: expected a (B, 3, H, W) tensor, got shape {tuple(images.shape)}")
    if images.shape[-2] < patch[0] or images.shape[-1] < patch[1]:
        raise ConfigError(f"images of {images.shape[-2]}x{images.shape[-1]} px are smaller than the "
                          f"{patch[0]}x{patch[1]} px patch size")


def _layer_indices(layers: Sequence[int], depth: int) -> list[int]:
    """Block indices in [0, depth), negative ones counted from the end."""
    out = []
    for index in layers:
        if not isinstance(index, int) or not -depth <= index < depth:
            raise ConfigError(f"layers: {index!r} is not a block index of this {depth}-block tower "
                              f"(use 0..{depth - 1}, or -1 for the last)")
        out.append(index % depth)
    return out


def _as_map(tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(B, N, C) -> (B, C, h, w)."""
    return tokens.reshape(tokens.shape[0], grid[0], grid[1], -1).permute(0, 3, 1, 2)


def dense_forward(model: nn.Module, images: torch.Tensor, mode: str | DenseMode = "vanilla",
                  layers: Sequence[int] = ()) -> DenseOutput:
    """Dense map, image embedding and block maps of ``images`` (B, 3, H, W), any H and W.

    Args:
        model: a CLIP (or its image tower) with an open_clip ViT, timm EVA02 or timm ViT/SigLIP tower.
        mode: a name from ``DENSE_MODES`` (its default parameters) or a ``DenseMode`` instance.
        layers: blocks whose raw token maps to return (any indices, negative from the end).
    """
    chosen = resolve_mode(mode)
    tower = tower_of(model)
    facts = tower.facts
    _check_images(images, facts.patch_size)
    take = _layer_indices(layers, facts.num_blocks)
    last_index = facts.num_blocks - 1
    x, grid, rope = tower.embed(images)
    x, maps = tower.run_blocks(x, [i for i in take if i != last_index], rope)
    last = tower.last_block(x, grid, rope)
    dense = _as_map(tower.joint(chosen.patch_tokens(last)), grid)
    image_embed = tower.pool(last)
    if last_index in take:
        maps[last_index] = last.unchanged()
    prefix = facts.num_prefix_tokens
    return DenseOutput(dense=dense, image_embed=image_embed,
                       layers=tuple(_as_map(maps[i][:, prefix:], grid) for i in take))


def encode_dense(model: nn.Module, images: torch.Tensor, mode: str | DenseMode = "vanilla") -> torch.Tensor:
    """Unit-norm dense features (B, D, h, w) in the joint image-text space."""
    return F.normalize(dense_forward(model, images, mode).dense, dim=1)


def patch_grid(model: nn.Module, image_size: tuple[int, int]) -> tuple[int, int]:
    """Size of the dense map for an input of ``image_size`` (H, W)."""
    patch = tower_facts(model).patch_size
    return image_size[0] // patch[0], image_size[1] // patch[1]
