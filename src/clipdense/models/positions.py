"""Position information for a patch grid other than the one a tower was built for.

Absolute tables are resized the way CLIPSelf and MaskCLIP resize them (bicubic, align_corners=False,
no antialias, prefix positions kept), so dense numbers stay comparable with theirs. Rotary tables
(EVA02) are rebuilt by timm's own rope module for the new grid.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError


def interpolate_pos_embed(pos_embed: torch.Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int],
                          prefix: int = 1) -> torch.Tensor:
    """Resize the patch part of a (prefix + N, C) position table; the ``prefix`` rows are kept.

    Bicubic, align_corners=False, no antialias: as CLIPSelf and MaskCLIP do.
    """
    if tuple(old_grid) == tuple(new_grid):
        return pos_embed
    prefix_pos, patch_pos = pos_embed[:prefix], pos_embed[prefix:]
    channels = patch_pos.shape[-1]
    grid = patch_pos.reshape(1, old_grid[0], old_grid[1], channels).permute(0, 3, 1, 2)
    grid = F.interpolate(grid.float(), size=tuple(new_grid), mode="bicubic", align_corners=False,
                         antialias=False)
    patch_pos = grid.to(pos_embed.dtype).permute(0, 2, 3, 1).reshape(-1, channels)
    return torch.cat([prefix_pos, patch_pos], dim=0)


def rope_for_grid(rope: nn.Module, grid: tuple[int, int]) -> torch.Tensor:
    """timm's concatenated sin/cos rotary table (N, 2 * dim) for a ``grid`` of patches.

    A rope built for a fixed grid caches only that grid's table; for another grid the table is
    rebuilt from the module's own frequency bands and settings (its ``ref_feat_shape`` rescaling
    included, which is what EVA02-CLIP and CLIPSelf do at other image sizes).
    """
    native = getattr(rope, "feat_shape", None)
    if native is None:
        return rope.get_embed(shape=list(grid))
    if tuple(native) == tuple(grid):
        return rope.get_embed()
    build = getattr(rope, "_build_embed_cat", None)
    if build is None:
        raise ConfigError(f"rotary position embedding {type(rope).__name__}: this timm version cannot rebuild "
                          f"the table for a {grid[0]}x{grid[1]} patch grid (use the native "
                          f"{native[0]}x{native[1]} grid or timm >= 1.0.20)")
    return build(list(grid), rope.bands)
