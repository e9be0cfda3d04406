"""Training-free dense modes: one small registered class each, with its parameters.

A mode says how the *patch* tokens leave the last block (the prefix / class tokens always take the
ordinary path, so the pooled image embedding never changes). It works on any tower whose last
block ``blocks.block_parts`` can take apart; a new mode is one class with ``@register_mode`` (and
one test). ``DENSE_MODES`` maps each name to its default instance; a string names that default,
an instance carries other parameters: ``dense_forward(model, x, mode=NACLIP(std=3.0))``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar, Mapping

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from .blocks import LastBlock

_REGISTRY: dict[str, "DenseMode"] = {}
DENSE_MODES: Mapping[str, "DenseMode"] = MappingProxyType(_REGISTRY)


class DenseMode(ABC):
    """How the patch tokens go through the last block.

    Subclasses are frozen dataclasses (their fields are the mode's parameters) with a ``name`` and a
    one-line ``description`` (printed by `clipdense info`).
    """

    name: ClassVar[str]
    description: ClassVar[str]

    @abstractmethod
    def patch_tokens(self, last: LastBlock) -> torch.Tensor:
        """(B, N, C) patch tokens after the last block, before the tower's final norm and head."""


def register_mode(cls: type[DenseMode]) -> type[DenseMode]:
    """Class decorator: make ``cls()`` the default instance under ``cls.name``."""
    if cls.name in _REGISTRY:
        raise ValueError(f"dense mode '{cls.name}' is already registered")
    _REGISTRY[cls.name] = cls()
    return cls


def resolve_mode(mode: str | DenseMode) -> DenseMode:
    """A mode instance from a registered name or an instance."""
    if isinstance(mode, DenseMode):
        return mode
    if isinstance(mode, str) and mode in _REGISTRY:
        return _REGISTRY[mode]
    raise ConfigError(f"unknown dense mode {mode!r}; choose one of {sorted(_REGISTRY)} or pass a DenseMode")


def neighbourhood_bias(grid: tuple[int, int], std: float, device: torch.device, dtype: torch.dtype,
                       prefix: int = 1) -> torch.Tensor:
    """(N, prefix + N) additive logits: a Gaussian of patch distance, zero towards the prefix tokens."""
    rows, cols = torch.meshgrid(torch.arange(grid[0], device=device), torch.arange(grid[1], device=device),
                                indexing="ij")
    coords = torch.stack([rows.flatten(), cols.flatten()], dim=1).float()
    gauss = torch.exp(-torch.cdist(coords, coords).pow(2) / (2 * std ** 2))
    return F.pad(gauss, (prefix, 0)).to(dtype)


def _value_path(last: LastBlock, mode: str) -> torch.Tensor:
    """Patch values through the output projection: the attention replaced by the value path."""
    parts = last.parts(mode)
    v = last.qkv(mode)[2]
    return parts.project(v[:, :, last.prefix:])


@register_mode
@dataclass(frozen=True)
class Vanilla(DenseMode):
    name: ClassVar[str] = "vanilla"
    description: ClassVar[str] = ("last block unchanged; patch tokens -> final norm -> projection "
                                  "(CLIP, Radford et al. 2021)")

    def patch_tokens(self, last: LastBlock) -> torch.Tensor:
        return last.unchanged()[:, last.prefix:]


@register_mode
@dataclass(frozen=True)
class MaskCLIP(DenseMode):
    name: ClassVar[str] = "maskclip"
    description: ClassVar[str] = ("last block's attention replaced by its value path, residual and MLP kept "
                                  "(MaskCLIP, Zhou et al. ECCV 2022, in the CLIPSelf variant, Wu et al. ICLR 2024)")

    def patch_tokens(self, last: LastBlock) -> torch.Tensor:
        parts = last.parts(self.name)
        return parts.ffn(parts.attn_residual(last.x[:, last.prefix:], _value_path(last, self.name)))


@register_mode
@dataclass(frozen=True)
class SCLIP(DenseMode):
    """Correlative self-attention as the official code runs it (wangf3014/SCLIP, clip/model.py):
    ``x = x + attn_csa(ln_1(x))`` then ``x = x + mlp(ln_2(x))``.

    Args:
        reduction: how the two attention maps combine: "sum" (official: softmax(qq^T) + softmax(kk^T),
            rows sum to 2) or "mean" (their average, rows sum to 1).
    """

    name: ClassVar[str] = "sclip"
    description: ClassVar[str] = ("correlative self-attention softmax(qq^T)+softmax(kk^T), residual and FFN kept "
                                  "(SCLIP, Wang et al. ECCV 2024, official code)")
    reduction: str = "sum"

    def __post_init__(self) -> None:
        if self.reduction not in ("sum", "mean"):
            raise ConfigError(f"SCLIP reduction must be 'sum' or 'mean', got {self.reduction!r}")

    def patch_tokens(self, last: LastBlock) -> torch.Tensor:
        parts, p = last.parts(self.name), last.prefix
        q, k, v = last.qkv(self.name)
        heads = F.scaled_dot_product_attention(q[:, :, p:], q, v) + F.scaled_dot_product_attention(k[:, :, p:], k, v)
        if self.reduction == "mean":
            heads = heads / 2
        return parts.ffn(parts.attn_residual(last.x[:, p:], parts.project(heads)))


@register_mode
@dataclass(frozen=True)
class ClearCLIP(DenseMode):
    name: ClassVar[str] = "clearclip"
    description: ClassVar[str] = ("q-q self-attention with no residual and no FFN in the last block "
                                  "(ClearCLIP, Lan et al. ECCV 2024)")

    def patch_tokens(self, last: LastBlock) -> torch.Tensor:
        parts, p = last.parts(self.name), last.prefix
        q, _, v = last.qkv(self.name)
        return parts.project(F.scaled_dot_product_attention(q[:, :, p:], q, v))


@register_mode
@dataclass(frozen=True)
class NACLIP(DenseMode):
    """Neighbourhood-aware attention.

    Args:
        std: standard deviation of the Gaussian neighbourhood prior, in patches (paper: 5).
    """

    name: ClassVar[str] = "naclip"
    description: ClassVar[str] = ("k-k attention plus a Gaussian neighbourhood prior (std 5 patches), no residual, "
                                  "no FFN (NACLIP, Hajimiri et al. WACV 2025)")
    std: float = 5.0

    def __post_init__(self) -> None:
        if not self.std > 0:
            raise ConfigError(f"NACLIP std must be > 0 patches, got {self.std}")

    def patch_tokens(self, last: LastBlock) -> torch.Tensor:
        parts, p = last.parts(self.name), last.prefix
        _, k, v = last.qkv(self.name)
        bias = neighbourhood_bias(last.grid, self.std, k.device, k.dtype, prefix=p)
        return parts.project(F.scaled_dot_product_attention(k[:, :, p:], k, v, attn_mask=bias))
