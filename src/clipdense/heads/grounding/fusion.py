"""GLIP's deep fusion: bidirectional image <-> text cross-attention with layer-scale (Li et al. 2022, eq. 3-4).

One attention matrix between every image position (all pyramid levels together) and every prompt token serves both
directions: softmax over tokens carries language into each position, softmax over positions carries the image into
each token. Each side adds its update scaled by a learnt per-channel ``gamma`` (layer-scale, GLIP's 1e-4 start), so
a fresh fusion layer starts as the identity. Padded tokens never send (masked) and receive nothing useful.

``FusionLayer`` = the cross-attention, then a 3x3 conv (GroupNorm, ReLU) on every level (GLIP's DyHead tower, in
its plain form) and a self-attention + MLP layer on the tokens (GLIP's extra BERT layer); with ``fuse=False`` only
the two towers run, which is the "no deep fusion" ablation (GLIP-T (A)).

Nothing here depends on the order of the tokens: permuting the tokens (with their mask) permutes the text output
and leaves the image output unchanged.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

NEG = -1e4   # a masked logit: finite, so a prompt of only padding still gives numbers (never NaN)


class BiAttention(nn.Module):
    """Multi-head attention between image positions (B, N, C) and tokens (B, L, T) in both directions.

    Args:
        image_dim: channels of the image features.
        text_dim: channels of the token features.
        dim: the attention's inner width (split over ``heads``).
        heads: attention heads.
        layer_scale: the initial value of both sides' ``gamma``.
    """

    def __init__(self, image_dim: int, text_dim: int, dim: int, heads: int, layer_scale: float) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"fusion dim {dim} is not divisible by {heads} heads")
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.norm_image, self.norm_text = nn.LayerNorm(image_dim), nn.LayerNorm(text_dim)
        self.query = nn.Linear(image_dim, dim)         # image positions ask
        self.key = nn.Linear(text_dim, dim)            # tokens answer
        self.value_image = nn.Linear(image_dim, dim)   # what positions send to tokens
        self.value_text = nn.Linear(text_dim, dim)     # what tokens send to positions
        self.out_image = nn.Linear(dim, image_dim)
        self.out_text = nn.Linear(dim, text_dim)
        self.gamma_image = nn.Parameter(torch.full((image_dim,), float(layer_scale)))
        self.gamma_text = nn.Parameter(torch.full((text_dim,), float(layer_scale)))

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.heads, -1).transpose(1, 2)     # (B, heads, n, d)

    def forward(self, image: torch.Tensor, text: torch.Tensor, mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """``image`` (B, N, C), ``text`` (B, L, T), ``mask`` (B, L) True on real tokens -> both updated."""
        v, t = self.norm_image(image), self.norm_text(text)
        logits = self._split(self.query(v)) @ self._split(self.key(t)).transpose(-1, -2) * self.scale  # (B,h,N,L)
        logits = logits.float().clamp(-5e4, 5e4)
        to_image = logits.masked_fill(~mask[:, None, None, :], NEG).softmax(-1)
        to_text = logits.transpose(-1, -2).softmax(-1)                                              # (B,h,L,N)
        image_update = (to_image.to(v.dtype) @ self._split(self.value_text(t))).transpose(1, 2).flatten(2)
        text_update = (to_text.to(v.dtype) @ self._split(self.value_image(v))).transpose(1, 2).flatten(2)
        image = image + self.gamma_image * self.out_image(image_update)
        text = text + self.gamma_text * self.out_text(text_update) * mask[..., None].to(text.dtype)
        return image, text


class TextLayer(nn.Module):
    """Pre-norm self-attention + MLP over the tokens (no positions: the tower's already carry them)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, text: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.norm1(text)
        attended, _ = self.attention(x, x, x, key_padding_mask=~mask, need_weights=False)
        text = text + attended
        return text + self.mlp(self.norm2(text))


class FusionLayer(nn.Module):
    """One layer of the fused towers: bi-attention (when ``fuse``), a conv on each level, a text layer."""

    def __init__(self, channels: int, text_dim: int, dim: int, heads: int, layer_scale: float, fuse: bool) -> None:
        super().__init__()
        self.fusion = BiAttention(channels, text_dim, dim, heads, layer_scale) if fuse else None
        # GroupNorm of at least two channels a group: the coarsest level may be 1x1 for a single image
        norm = nn.GroupNorm(math.gcd(16, max(1, channels // 2)), channels)
        self.conv = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), norm, nn.ReLU())
        self.text = TextLayer(text_dim, max(1, math.gcd(heads, text_dim)))

    def forward(self, levels: Sequence[torch.Tensor], text: torch.Tensor, mask: torch.Tensor
                ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """``levels``: (B, C, h_i, w_i) maps; ``text`` (B, L, T); ``mask`` (B, L)."""
        levels = list(levels)
        if self.fusion is not None:
            sizes = [lv.shape[-2:] for lv in levels]
            flat = torch.cat([lv.flatten(2).transpose(1, 2) for lv in levels], dim=1)
            flat, text = self.fusion(flat, text, mask)
            counts = [int(h) * int(w) for h, w in sizes]
            levels = [part.transpose(1, 2).reshape(-1, part.shape[-1], int(h), int(w))
                      for part, (h, w) in zip(flat.split(counts, dim=1), sizes)]
        levels = [self.conv(lv) for lv in levels]
        return levels, self.text(text, mask)


def fusion_stack(layers: int, channels: int, text_dim: int, dim: int, heads: int, layer_scale: float,
                 fuse: bool) -> nn.ModuleList:
    """``layers`` fused (or, with ``fuse`` off, only stacked) layers."""
    return nn.ModuleList(FusionLayer(channels, text_dim, dim, heads, layer_scale, fuse) for _ in range(layers))


__all__ = ["BiAttention", "FusionLayer", "TextLayer", "fusion_stack"]
