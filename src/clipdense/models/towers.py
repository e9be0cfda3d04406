"""Image-tower adapters: how each ViT family turns images into tokens, runs its blocks and reaches the
joint image-text space. Chosen by a registry keyed on the module type, never on model names.

- open_clip ``VisionTransformer`` (CLIP, OpenAI / LAION weights): blocks run through open_clip's own
  ``transformer.forward_intermediates`` (its gradient checkpointing included).
- timm ``Eva`` inside open_clip's ``TimmModel`` (EVA02-CLIP): rotary positions rebuilt for the grid.
- timm ``VisionTransformer`` inside ``TimmModel`` (SigLIP, SigLIP 2, timm CLIP ViTs). SigLIP has no
  class token; its attention-pool (MAP) head reaches the joint space per patch by the MaskCLIP
  treatment of attention pooling: each patch token through the pool's value and output projections
  and its MLP (the latent query's attention over patches is what the value path replaces), then the
  tower's head, exactly as MaskCLIP does with CLIP-ResNet's attention pool.

timm's ``forward_intermediates`` starts from pixels with the tower's fixed position table, so for
timm towers the (interpolated) embedding is built here from the tower's own modules and its blocks are
called in order (with timm's gradient checkpointing when enabled).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cached_property
from typing import Sequence

import torch
from open_clip.timm_model import TimmModel
from open_clip.transformer import VisionTransformer as OpenClipViT
from timm.layers import AttentionPoolLatent, PatchEmbed
from timm.models.eva import Eva
from timm.models.vision_transformer import VisionTransformer as TimmViT
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..errors import ModelLoadError
from .blocks import LastBlock
from .positions import interpolate_pos_embed, rope_for_grid


@dataclass(frozen=True)
class TowerFacts:
    """What a head built on a tower needs to know.

    Args:
        width: token width of the blocks (channels of ``DenseOutput.layers``).
        output_dim: width of the joint image-text space (channels of ``DenseOutput.dense``).
        patch_size: (h, w) pixels per patch.
        image_size: (H, W) native input size.
        num_blocks: transformer blocks (``layers`` indices run over 0..num_blocks-1).
        num_prefix_tokens: class / register tokens before the patch tokens.
    """

    width: int
    output_dim: int
    patch_size: tuple[int, int]
    image_size: tuple[int, int]
    num_blocks: int
    num_prefix_tokens: int


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    return (int(value[0]), int(value[1])) if isinstance(value, (tuple, list)) else (int(value), int(value))


class Tower(ABC):
    """The steps of a dense forward for one tower family; ``visual`` is the model's image tower."""

    def __init__(self, visual: nn.Module) -> None:
        self.visual = visual

    @property
    @abstractmethod
    def facts(self) -> TowerFacts:
        """Widths, patch and image size, block count."""

    @property
    @abstractmethod
    def blocks(self) -> nn.ModuleList:
        """The transformer blocks, in order (what CLIPSelf's published recipe trains)."""

    @abstractmethod
    def embed(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int], torch.Tensor | None]:
        """Tokens (B, prefix + N, C) ready for block 0, the (h, w) patch grid, and a rotary table or None."""

    @abstractmethod
    def run_blocks(self, x: torch.Tensor, take: Sequence[int],
                   rope: torch.Tensor | None) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """Every block but the last; returns its output and the raw outputs of blocks ``take``."""

    @abstractmethod
    def last_block(self, x: torch.Tensor, grid: tuple[int, int], rope: torch.Tensor | None) -> LastBlock:
        """The last block at this forward."""

    @abstractmethod
    def pool(self, last: LastBlock) -> torch.Tensor:
        """(B, D) image embedding exactly as the model computes it."""

    @abstractmethod
    def joint(self, patches: torch.Tensor) -> torch.Tensor:
        """(B, N, C) patch tokens out of the last block -> (B, N, D) in the joint space."""


_TOWERS: dict[type, type[Tower]] = {}


def register_tower(module_type: type):
    """Class decorator: use the class for image towers that are instances of ``module_type``."""
    def add(cls: type[Tower]) -> type[Tower]:
        _TOWERS[module_type] = cls
        return cls
    return add


def tower_of(model: nn.Module) -> Tower:
    """The adapter for ``model``'s image tower (a CLIP, its ``.visual``, or a wrapper with ``.model``)."""
    model = getattr(model, "model", model)
    visual = getattr(model, "visual", model)
    inner = visual.trunk if isinstance(visual, TimmModel) else visual
    for cls in type(inner).__mro__:
        if cls in _TOWERS:
            return _TOWERS[cls](visual)
    known = ", ".join(sorted(t.__name__ for t in _TOWERS))
    raise ModelLoadError(f"dense features need a ViT image tower ({known}; timm ones inside open_clip's "
                         f"TimmModel), got {type(inner).__name__}")


def tower_facts(model: nn.Module) -> TowerFacts:
    """Width, joint-space width, patch size, native image size and block count of ``model``'s image tower."""
    return tower_of(model).facts


@register_tower(OpenClipViT)
class OpenClipTower(Tower):
    """open_clip's VisionTransformer (class token, ``ln_post`` and ``proj`` into the joint space)."""

    def __init__(self, visual: nn.Module) -> None:
        super().__init__(visual)
        if visual.attn_pool is not None:
            raise ModelLoadError("dense features are not defined for towers with an attentional pooler (CoCa)")

    @cached_property
    def facts(self) -> TowerFacts:
        v = self.visual
        return TowerFacts(width=int(v.transformer.width), output_dim=int(v.output_dim),
                          patch_size=_pair(v.patch_size), image_size=_pair(v.image_size),
                          num_blocks=len(v.transformer.resblocks), num_prefix_tokens=1)

    @property
    def blocks(self) -> nn.ModuleList:
        return self.visual.transformer.resblocks

    def embed(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int], None]:
        v = self.visual
        x = v.conv1(images.to(v.conv1.weight.dtype))
        grid = (x.shape[-2], x.shape[-1])
        x = x.flatten(2).transpose(1, 2)
        cls = v.class_embedding.to(x.dtype).view(1, 1, -1).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)
        x = x + interpolate_pos_embed(v.positional_embedding, v.grid_size, grid).to(x.dtype)
        return v.ln_pre(x), grid, None

    def run_blocks(self, x: torch.Tensor, take: Sequence[int],
                   rope: torch.Tensor | None) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        depth = len(self.visual.transformer.resblocks)
        if depth == 1:
            return x, {}
        indices = sorted(set(take) | {depth - 2})
        x, outputs = self.visual.transformer.forward_intermediates(x, indices=indices, stop_early=True)
        return x, dict(zip(indices, outputs))

    def _run_last(self, x: torch.Tensor) -> torch.Tensor:
        transformer = self.visual.transformer
        block = transformer.resblocks[-1]
        batch_first = getattr(transformer, "batch_first", True)
        x = x if batch_first else x.transpose(0, 1)
        if transformer.grad_checkpointing and torch.is_grad_enabled():
            x = checkpoint(block, x, use_reentrant=False)
        else:
            x = block(x)
        return x if batch_first else x.transpose(0, 1)

    def last_block(self, x: torch.Tensor, grid: tuple[int, int], rope: torch.Tensor | None) -> LastBlock:
        return LastBlock(self.visual.transformer.resblocks[-1], x, grid, 1, self._run_last)

    def pool(self, last: LastBlock) -> torch.Tensor:
        v = self.visual
        pooled, _ = v._pool(last.prefix_out() if v.pool_type == "tok" else last.unchanged())
        return pooled @ v.proj if v.proj is not None else pooled

    def joint(self, patches: torch.Tensor) -> torch.Tensor:
        patches = self.visual.ln_post(patches)
        return patches @ self.visual.proj if self.visual.proj is not None else patches


class TimmTower(Tower):
    """A timm ViT trunk inside open_clip's TimmModel: ``trunk.norm`` -> trunk head -> open_clip head."""

    def __init__(self, visual: nn.Module) -> None:
        super().__init__(visual)
        self.trunk = visual.trunk
        embed = self.trunk.patch_embed
        if not isinstance(embed, PatchEmbed):
            raise ModelLoadError(f"dense features need timm's plain PatchEmbed, got {type(embed).__name__}")
        pool = self.trunk.attn_pool
        if pool is not None and (type(pool) is not AttentionPoolLatent or pool.pos_embed is not None):
            raise ModelLoadError(f"dense features: this {type(pool).__name__} head is not supported (timm's "
                                 "AttentionPoolLatent without a position table is)")

    @cached_property
    def facts(self) -> TowerFacts:
        t = self.trunk
        return TowerFacts(width=int(t.embed_dim), output_dim=self._output_dim(),
                          patch_size=_pair(t.patch_embed.patch_size), image_size=_pair(self.visual.image_size),
                          num_blocks=len(t.blocks), num_prefix_tokens=int(t.num_prefix_tokens))

    @property
    def blocks(self) -> nn.ModuleList:
        return self.trunk.blocks

    def _output_dim(self) -> int:
        for head in (self.visual.head, self.trunk.head):
            linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
            if linears:
                return int(linears[-1].out_features)
        pool = self.trunk.attn_pool
        return int(pool.out_features if pool is not None else self.trunk.num_features)

    def _rope(self, grid: tuple[int, int]) -> torch.Tensor | None:
        return None

    def embed(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int], torch.Tensor | None]:
        t = self.trunk
        x = t.patch_embed.proj(images.to(t.patch_embed.proj.weight.dtype))
        grid = (x.shape[-2], x.shape[-1])
        x = t.patch_embed.norm(x.flatten(2).transpose(1, 2))
        prefix = [tok.expand(x.shape[0], -1, -1) for tok in (t.cls_token, t.reg_token) if tok is not None]
        if t.pos_embed is None:
            x = torch.cat(prefix + [x], dim=1)
        elif t.no_embed_class:
            pos = interpolate_pos_embed(t.pos_embed[0], t.patch_embed.grid_size, grid, prefix=0)
            x = torch.cat(prefix + [x + pos.to(x.dtype)], dim=1)
        else:
            pos = interpolate_pos_embed(t.pos_embed[0], t.patch_embed.grid_size, grid, prefix=t.num_prefix_tokens)
            x = torch.cat(prefix + [x], dim=1) + pos.to(x.dtype)
        return t.norm_pre(t.pos_drop(x)), grid, self._rope(grid)

    def _run(self, block: nn.Module, x: torch.Tensor, rope: torch.Tensor | None) -> torch.Tensor:
        kwargs = {} if rope is None else {"rope": rope}
        if self.trunk.grad_checkpointing and torch.is_grad_enabled():
            return checkpoint(block, x, use_reentrant=False, **kwargs)
        return block(x, **kwargs)

    def run_blocks(self, x: torch.Tensor, take: Sequence[int],
                   rope: torch.Tensor | None) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        outputs = {}
        for index, block in enumerate(self.trunk.blocks[:-1]):
            x = self._run(block, x, rope)
            if index in take:
                outputs[index] = x
        return x, outputs

    def last_block(self, x: torch.Tensor, grid: tuple[int, int], rope: torch.Tensor | None) -> LastBlock:
        block = self.trunk.blocks[-1]
        return LastBlock(block, x, grid, int(self.trunk.num_prefix_tokens), lambda y: self._run(block, y, rope),
                         rope)

    def pool(self, last: LastBlock) -> torch.Tensor:
        t = self.trunk
        token_pool = t.attn_pool is None and t.global_pool == "token"
        x = t.norm(last.prefix_out() if token_pool else last.unchanged())
        return self.visual.head(t.forward_head(x))

    def joint(self, patches: torch.Tensor) -> torch.Tensor:
        t = self.trunk
        x = t.norm(patches)
        if t.attn_pool is not None:
            x = map_value_path(t.attn_pool, x)
        return self.visual.head(t.head(t.head_drop(t.fc_norm(x))))


def map_value_path(pool: AttentionPoolLatent, x: torch.Tensor) -> torch.Tensor:
    """Each token through an attention pool with its attention replaced by the value path:
    value projection, output projection, then the pool's residual MLP (MaskCLIP's treatment)."""
    _, values = pool.kv(x).chunk(2, dim=-1)
    out = pool.proj_drop(pool.proj(values))
    return out + pool.mlp(pool.norm(out)) if pool.mlp is not None else out


@register_tower(TimmViT)
class TimmViTTower(TimmTower):
    """timm VisionTransformer (SigLIP / SigLIP 2 with the MAP head, or a class-token ViT)."""


@register_tower(Eva)
class EvaTower(TimmTower):
    """timm Eva (EVA02-CLIP): rotary position embedding on the patch tokens, rebuilt per grid."""

    def __init__(self, visual: nn.Module) -> None:
        super().__init__(visual)
        if getattr(self.trunk, "rope_mixed", False):
            raise ModelLoadError("dense features: timm Eva with per-block (mixed) rotary embeddings is not supported")

    def _rope(self, grid: tuple[int, int]) -> torch.Tensor | None:
        return None if self.trunk.rope is None else rope_for_grid(self.trunk.rope, grid)
