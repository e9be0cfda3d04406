"""The last transformer block, taken apart so a dense mode can put it back together differently.

Every training-free dense mode rewrites the same few steps of a pre-norm block (queries, keys and
values from the first norm; attention; output projection; residual; MLP). ``BlockParts`` exposes
those steps for one library's block type by calling that block's own submodules; the registry is
keyed on the block's type. ``LastBlock`` holds one forward's input to the last block and shares the
pieces (q, k, v; the unchanged output) between the mode and the pooled embedding.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable

import torch
import torch.nn.functional as F
from open_clip.transformer import ResidualAttentionBlock
from timm.layers import Attention, apply_rot_embed_cat
from timm.models.eva import EvaAttention, EvaBlock
from timm.models.vision_transformer import Block as TimmBlock
from torch import nn

from ..errors import ConfigError

QKV = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class BlockParts(ABC):
    """One pre-norm attention block as separate steps; all tensors are batch-first.

    Args:
        block: the library's block module (its own weights and submodules are used).
        prefix: number of leading non-patch tokens (class / register tokens).
        rope: rotary table of the patch tokens (EVA02), or None.
    """

    def __init__(self, block: nn.Module, prefix: int, rope: torch.Tensor | None = None) -> None:
        self.block, self.prefix, self.rope = block, prefix, rope

    @abstractmethod
    def qkv(self, x: torch.Tensor) -> QKV:
        """q, k, v of shape (B, heads, L, head_dim) from the block's first norm of ``x`` (B, L, C)."""

    @abstractmethod
    def project(self, heads: torch.Tensor) -> torch.Tensor:
        """Attention output (B, heads, n, head_dim) -> (B, n, C): merge heads, inner norm, out projection."""

    @abstractmethod
    def attn_residual(self, x: torch.Tensor, attn_out: torch.Tensor) -> torch.Tensor:
        """``x`` plus the (layer-scaled) attention branch."""

    @abstractmethod
    def ffn(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` plus the (layer-scaled) MLP branch of the second norm."""


def _heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    batch, length, width = t.shape
    return t.reshape(batch, length, heads, width // heads).transpose(1, 2)


def _merge(t: torch.Tensor) -> torch.Tensor:
    batch, heads, length, dim = t.shape
    return t.transpose(1, 2).reshape(batch, length, heads * dim)


class OpenClipParts(BlockParts):
    """open_clip's ResidualAttentionBlock (nn.MultiheadAttention with packed in-projection)."""

    def __init__(self, block: nn.Module, prefix: int, rope: torch.Tensor | None = None) -> None:
        super().__init__(block, prefix, rope)
        attn = block.attn
        if hasattr(block, "ln_1_kv") or not attn._qkv_same_embed_dim or attn.bias_k is not None \
                or attn.add_zero_attn:
            raise ConfigError("a cross-attention block or one with separate key/value widths")

    def qkv(self, x: torch.Tensor) -> QKV:
        attn = self.block.attn
        q, k, v = F.linear(self.block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
        return _heads(q, attn.num_heads), _heads(k, attn.num_heads), _heads(v, attn.num_heads)

    def project(self, heads: torch.Tensor) -> torch.Tensor:
        return self.block.attn.out_proj(_merge(heads))

    def attn_residual(self, x: torch.Tensor, attn_out: torch.Tensor) -> torch.Tensor:
        return x + self.block.ls_1(attn_out)

    def ffn(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block.ls_2(self.block.mlp(self.block.ln_2(x)))


class TimmVitParts(BlockParts):
    """timm's VisionTransformer Block with its standard Attention (SigLIP, SigLIP 2, timm CLIP ViTs)."""

    def __init__(self, block: nn.Module, prefix: int, rope: torch.Tensor | None = None) -> None:
        super().__init__(block, prefix, rope)
        if type(block.attn) is not Attention:
            raise ConfigError(f"attention {type(block.attn).__name__} (only timm's Attention is taken apart)")
        if block.attn.gate is not None:
            raise ConfigError("gated attention")

    def qkv(self, x: torch.Tensor) -> QKV:
        attn = self.block.attn
        y = self.block.norm1(x)
        batch, length, _ = y.shape
        qkv = attn.qkv(y).reshape(batch, length, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        return attn.q_norm(q), attn.k_norm(k), v

    def project(self, heads: torch.Tensor) -> torch.Tensor:
        attn = self.block.attn
        return attn.proj_drop(attn.proj(attn.norm(_merge(heads))))

    def attn_residual(self, x: torch.Tensor, attn_out: torch.Tensor) -> torch.Tensor:
        return x + self.block.drop_path1(self.block.ls1(attn_out))

    def ffn(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block.drop_path2(self.block.ls2(self.block.mlp(self.block.norm2(x))))


class EvaParts(BlockParts):
    """timm's EvaBlock (EVA02: rotary positions on the patch tokens, SwiGLU MLP, inner attention norm)."""

    def __init__(self, block: nn.Module, prefix: int, rope: torch.Tensor | None = None) -> None:
        super().__init__(block, prefix, rope)
        if type(block.attn) is not EvaAttention:
            raise ConfigError(f"attention {type(block.attn).__name__} (only timm's EvaAttention is taken apart)")
        if block.attn.gate is not None:
            raise ConfigError("gated attention")

    def qkv(self, x: torch.Tensor) -> QKV:
        attn = self.block.attn
        y = self.block.norm1(x)
        if attn.qkv is not None:
            bias = None if attn.q_bias is None else torch.cat((attn.q_bias, attn.k_bias, attn.v_bias))
            batch, length, _ = y.shape
            qkv = F.linear(y, attn.qkv.weight, bias).reshape(batch, length, 3, attn.num_heads, -1)
            q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        else:
            q, k, v = (_heads(proj(y), attn.num_heads) for proj in (attn.q_proj, attn.k_proj, attn.v_proj))
        q, k = attn.q_norm(q), attn.k_norm(k)
        if self.rope is not None:
            q, k = self._rotate(q).type_as(v), self._rotate(k).type_as(v)
        return q, k, v

    def _rotate(self, t: torch.Tensor) -> torch.Tensor:
        half = getattr(self.block.attn, "rotate_half", False)
        patches = apply_rot_embed_cat(t[:, :, self.prefix:], self.rope, half=half)
        return torch.cat([t[:, :, :self.prefix], patches], dim=2)

    def project(self, heads: torch.Tensor) -> torch.Tensor:
        attn = self.block.attn
        return attn.proj_drop(attn.proj(attn.norm(_merge(heads))))

    def attn_residual(self, x: torch.Tensor, attn_out: torch.Tensor) -> torch.Tensor:
        gamma = self.block.gamma_1
        return x + self.block.drop_path1(attn_out if gamma is None else gamma * attn_out)

    def ffn(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block.mlp(self.block.norm2(x))
        gamma = self.block.gamma_2
        return x + self.block.drop_path2(out if gamma is None else gamma * out)


BLOCK_PARTS: dict[type, type[BlockParts]] = {
    ResidualAttentionBlock: OpenClipParts,
    TimmBlock: TimmVitParts,
    EvaBlock: EvaParts,
}


def block_parts(block: nn.Module, prefix: int, rope: torch.Tensor | None = None) -> BlockParts:
    """The registered parts for ``block``'s type; ConfigError(reason) when it cannot be taken apart."""
    for cls in type(block).__mro__:
        if cls in BLOCK_PARTS:
            return BLOCK_PARTS[cls](block, prefix, rope)
    known = ", ".join(sorted(c.__name__ for c in BLOCK_PARTS))
    raise ConfigError(f"block type {type(block).__name__} (known: {known})")


class LastBlock:
    """One forward's input to the last block, with the pieces dense modes and pooling share.

    Args:
        block: the last block module.
        x: its input tokens (B, prefix + N, C), batch-first.
        grid: (h, w) patch grid of the N patch tokens.
        prefix: number of leading non-patch tokens.
        run: the block exactly as the model runs it (layout, rope, checkpointing), batch-first in and out.
        rope: rotary table of the patch tokens, or None.
    """

    def __init__(self, block: nn.Module, x: torch.Tensor, grid: tuple[int, int], prefix: int,
                 run: Callable[[torch.Tensor], torch.Tensor], rope: torch.Tensor | None = None) -> None:
        self.block, self.x, self.grid, self.prefix = block, x, grid, prefix
        self._run, self._rope = run, rope
        self._full: torch.Tensor | None = None
        self._qkv: QKV | None = None
        self._parts: BlockParts | ConfigError | None = None

    def unchanged(self) -> torch.Tensor:
        """All tokens through the unmodified block (what the model itself computes)."""
        if self._full is None:
            self._full = self._run(self.x)
        return self._full

    def _parts_or_error(self) -> BlockParts | ConfigError:
        if self._parts is None:
            try:
                self._parts = block_parts(self.block, self.prefix, self._rope)
            except ConfigError as exc:
                self._parts = exc
        return self._parts

    def parts(self, mode: str) -> BlockParts:
        """The block's parts for dense mode ``mode``, or a one-line ConfigError saying why not."""
        parts = self._parts_or_error()
        if isinstance(parts, ConfigError):
            raise ConfigError(f"dense mode '{mode}' rewrites the last block's attention, which clipdense cannot "
                              f"take apart for {type(self.block).__name__}: {parts}; use mode 'vanilla'")
        return parts

    def qkv(self, mode: str) -> QKV:
        """q, k, v of all tokens (computed once per forward)."""
        if self._qkv is None:
            self._qkv = self.parts(mode).qkv(self.x)
        return self._qkv

    def prefix_out(self) -> torch.Tensor:
        """The prefix (class) tokens through the unmodified block: only their queries are attended."""
        parts = self._parts_or_error()
        if self._full is not None or isinstance(parts, ConfigError) or self.prefix == 0:
            return self.unchanged()[:, :self.prefix]
        q, k, v = self.qkv("vanilla")
        out = parts.project(F.scaled_dot_product_attention(q[:, :, :self.prefix], k, v))
        return parts.ffn(parts.attn_residual(self.x[:, :self.prefix], out))
