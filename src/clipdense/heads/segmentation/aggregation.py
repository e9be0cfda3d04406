"""Cat-Seg's cost aggregation, written from the paper (Cho et al., "CAT-Seg: Cost Aggregation for
Open-Vocabulary Semantic Segmentation", CVPR 2024, Sec. 3):

- the cost volume is the cosine between every pixel of the CLIP dense map and every class's text
  embedding in every prompt template, (B, T, P, h, w), embedded per class by one 7x7 convolution;
- spatial aggregation treats each class's cost map as an image: two Swin-style blocks (windowed, then
  shifted-window self-attention) whose queries and keys also see projected CLIP image features (guidance);
- class aggregation treats the T classes at each pixel as a set: linear attention with no positional
  encoding (so permuting the classes permutes the output), text embeddings as guidance in queries and keys;
- an upsampling decoder, guided by two intermediate CLIP blocks, then one logit per class per pixel.

Guidance "concatenated into queries and keys" is computed as ``W [x; g] = W_x x + W_g g``: the same
linear map, with ``W_g g`` computed once per image (or class) and broadcast instead of copied T times.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

MASKED = -1e4  # additive attention logit between tokens of different shift regions or padding


def cost_volume(dense: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """(B, T, P, h, w) cosines of unit-norm ``dense`` (B, D, h, w) and ``text`` (T, P, D) or (B, T, P, D)."""
    if text.ndim == 3:
        return torch.einsum("bdhw,tpd->btphw", dense, text)
    return torch.einsum("bdhw,btpd->btphw", dense, text)


class CostEmbedding(nn.Module):
    """Each class's P-channel cost map -> ``dim`` channels by one 7x7 convolution (shared over classes)."""

    def __init__(self, prompts: int, dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(prompts, dim, kernel_size=7, padding=3)

    def forward(self, cost: torch.Tensor) -> torch.Tensor:
        """(B, T, P, h, w) -> (B, T, h, w, dim)."""
        batch, classes = cost.shape[:2]
        out = self.conv(cost.flatten(0, 1)).unflatten(0, (batch, classes))
        return out.permute(0, 1, 3, 4, 2)


def _windows(x: torch.Tensor, size: int) -> torch.Tensor:
    """(..., H, W, C) with H, W multiples of ``size`` -> (..., n_windows, size * size, C)."""
    *lead, height, width, channels = x.shape
    x = x.reshape(*lead, height // size, size, width // size, size, channels)
    x = x.transpose(-4, -3)
    return x.reshape(*lead, (height // size) * (width // size), size * size, channels)


def _unwindows(x: torch.Tensor, size: int, height: int, width: int) -> torch.Tensor:
    """Inverse of ``_windows``."""
    *lead, _, _, channels = x.shape
    x = x.reshape(*lead, height // size, width // size, size, size, channels).transpose(-4, -3)
    return x.reshape(*lead, height, width, channels)


def relative_index(size: int, table_size: int, device: torch.device) -> torch.Tensor:
    """(L, L) index into a ((2 table_size - 1)^2)-row bias table of the offsets inside a ``size`` window."""
    coords = torch.stack(torch.meshgrid(torch.arange(size, device=device), torch.arange(size, device=device),
                                        indexing="ij")).flatten(1)
    offset = coords[:, :, None] - coords[:, None, :] + (table_size - 1)
    return offset[0] * (2 * table_size - 1) + offset[1]


def region_mask(height: int, width: int, size: int, shift: int, device: torch.device) -> torch.Tensor | None:
    """(n_windows, L, L) additive mask for a padded ``height`` x ``width`` map rolled by ``-shift``:
    tokens attend only within their own shift region and never to padding. None when nothing is masked."""
    pad_h, pad_w = -height % size, -width % size
    if shift == 0 and pad_h == 0 and pad_w == 0:
        return None
    full_h, full_w = height + pad_h, width + pad_w
    ids = torch.zeros(full_h, full_w, device=device)
    if shift > 0:
        bounds = (slice(0, -size), slice(-size, -shift), slice(-shift, None))
        for i, rows in enumerate(bounds):
            for j, cols in enumerate(bounds):
                ids[rows, cols] = 3 * i + j
    padded = torch.zeros(full_h, full_w, dtype=torch.bool, device=device)
    padded[height:, :] = True
    padded[:, width:] = True
    ids = ids + 9 * torch.roll(padded, (-shift, -shift), (0, 1)).float()
    windows = _windows(ids[..., None], size)[..., 0]
    return torch.where(windows[:, :, None] != windows[:, None, :], MASKED, 0.0)


class GuidedWindowAttention(nn.Module):
    """Multi-head self-attention inside windows, guidance in queries and keys, relative position bias."""

    def __init__(self, dim: int, guide_dim: int, heads: int, window: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"hidden_dim {dim} is not divisible by heads {heads}")
        self.heads, self.window = heads, window
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.q_guide = nn.Linear(guide_dim, dim, bias=False)
        self.k_guide = nn.Linear(guide_dim, dim, bias=False)
        self.proj = nn.Linear(dim, dim)
        self.bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        nn.init.trunc_normal_(self.bias_table, std=0.02)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        """(..., L, C) -> (..., heads, L, C / heads)."""
        return x.unflatten(-1, (self.heads, -1)).transpose(-3, -2)

    def forward(self, x: torch.Tensor, guide: torch.Tensor, size: int, mask: torch.Tensor | None) -> torch.Tensor:
        """x: (B, T, nW, L, C) windows of every class map; guide: (B, nW, L, G) windows of the guidance."""
        q = self.q(x) + self.q_guide(guide)[:, None]
        k = self.k(x) + self.k_guide(guide)[:, None]
        q, k, v = self._split(q), self._split(k), self._split(self.v(x))
        bias = self.bias_table[relative_index(size, self.window, x.device)].permute(2, 0, 1)   # (heads, L, L)
        attn_bias = bias if mask is None else bias + mask[:, None]                             # (nW, heads, L, L)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias.to(q.dtype))
        return self.proj(out.transpose(-3, -2).flatten(-2))


class Mlp(nn.Sequential):
    def __init__(self, dim: int, ratio: int = 4) -> None:
        super().__init__(nn.Linear(dim, dim * ratio), nn.GELU(), nn.Linear(dim * ratio, dim))


class SpatialBlock(nn.Module):
    """One Swin-style block on every class's cost map (``shifted``: windows moved by half a window)."""

    def __init__(self, dim: int, guide_dim: int, heads: int, window: int, shifted: bool) -> None:
        super().__init__()
        self.window, self.shifted = window, shifted
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = GuidedWindowAttention(dim, guide_dim, heads, window)
        self.mlp = Mlp(dim)

    def forward(self, x: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        """x: (B, T, h, w, C); guide: (B, h, w, G)."""
        height, width = x.shape[2:4]
        size = min(self.window, max(height, width))
        shift = size // 2 if self.shifted and size < max(height, width) else 0
        pad_h, pad_w = -height % size, -width % size
        y = F.pad(self.norm1(x), (0, 0, 0, pad_w, 0, pad_h))
        g = F.pad(guide, (0, 0, 0, pad_w, 0, pad_h))
        if shift:
            y, g = torch.roll(y, (-shift, -shift), (2, 3)), torch.roll(g, (-shift, -shift), (1, 2))
        mask = region_mask(height, width, size, shift, x.device)
        y = self.attn(_windows(y, size), _windows(g, size), size, mask)
        y = _unwindows(y, size, height + pad_h, width + pad_w)
        if shift:
            y = torch.roll(y, (shift, shift), (2, 3))
        x = x + y[:, :, :height, :width]
        return x + self.mlp(self.norm2(x))


class ClassBlock(nn.Module):
    """Linear attention over the classes at each pixel (Katharopoulos et al. 2020), text guidance in queries
    and keys, no positional encoding: a permutation of the classes permutes the output the same way."""

    def __init__(self, dim: int, guide_dim: int, heads: int, eps: float = 1e-6) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"hidden_dim {dim} is not divisible by heads {heads}")
        self.heads, self.eps = heads, eps
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.q_guide = nn.Linear(guide_dim, dim, bias=False)
        self.k_guide = nn.Linear(guide_dim, dim, bias=False)
        self.proj = nn.Linear(dim, dim)
        self.mlp = Mlp(dim)

    def _attend(self, x: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        """x: (B, T, h, w, C); guide: (B, T, G). Feature map elu + 1 keeps the kernel positive."""
        extra = guide[:, :, None, None]
        q = F.elu(self.q(x) + self.q_guide(extra)) + 1
        k = F.elu(self.k(x) + self.k_guide(extra)) + 1
        v = self.v(x)
        q, k, v = (t.unflatten(-1, (self.heads, -1)) for t in (q, k, v))          # (B, T, h, w, H, d)
        context = torch.einsum("bthwnd,bthwne->bhwnde", k, v)                      # sums over the classes
        norm = torch.einsum("bthwnd,bhwnd->bthwn", q, k.sum(1)) + self.eps
        out = torch.einsum("bthwnd,bhwnde->bthwne", q, context) / norm[..., None]
        return self.proj(out.flatten(-2))

    def forward(self, x: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        x = x + self._attend(self.norm1(x), guide)
        return x + self.mlp(self.norm2(x))


class AggregationLayer(nn.Module):
    """Spatial aggregation (window block, shifted-window block), then class aggregation."""

    def __init__(self, dim: int, guide_dim: int, heads: int, window: int) -> None:
        super().__init__()
        self.spatial = nn.ModuleList([SpatialBlock(dim, guide_dim, heads, window, shifted)
                                      for shifted in (False, True)])
        self.classes = ClassBlock(dim, guide_dim, heads)

    def forward(self, x: torch.Tensor, image_guide: torch.Tensor, text_guide: torch.Tensor) -> torch.Tensor:
        for block in self.spatial:
            x = block(x, image_guide)
        return self.classes(x, text_guide)


class GuidedUpsample(nn.Module):
    """x2 upsampling of every class map, fused with an intermediate CLIP block brought to the new size by a
    transposed convolution (``scale`` = that size over the CLIP grid)."""

    def __init__(self, in_dim: int, width: int, guide_dim: int, out_dim: int, scale: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.guide = nn.ConvTranspose2d(width, guide_dim, kernel_size=scale, stride=scale)
        self.fuse_x = nn.Conv2d(in_dim, out_dim, 3, padding=1)
        self.fuse_guide = nn.Conv2d(guide_dim, out_dim, 3, padding=1, bias=False)
        self.rest = nn.Sequential(nn.GELU(), nn.Conv2d(out_dim, out_dim, 3, padding=1), nn.GELU())

    def forward(self, x: torch.Tensor, layer: torch.Tensor) -> torch.Tensor:
        """x: (B, T, C, h, w) -> (B, T, out, 2h, 2w); layer: (B, width, h0, w0) raw block tokens."""
        batch, classes = x.shape[:2]
        x = F.interpolate(x.flatten(0, 1), scale_factor=2, mode="bilinear", align_corners=False)
        guide = self.guide(self.norm(layer.permute(0, 2, 3, 1)).permute(0, 3, 1, 2))
        guide = F.interpolate(guide, size=x.shape[-2:], mode="bilinear", align_corners=False) \
            if guide.shape[-2:] != x.shape[-2:] else guide
        fused = self.fuse_x(x).unflatten(0, (batch, classes)) + self.fuse_guide(guide)[:, None]
        return self.rest(fused.flatten(0, 1)).unflatten(0, (batch, classes))


class Decoder(nn.Module):
    """Two guided x2 upsamplings (deepest guidance block first), then one logit per class per pixel."""

    def __init__(self, in_dim: int, width: int, dims: Sequence[int], guide_dims: Sequence[int]) -> None:
        super().__init__()
        if len(dims) != 2 or len(guide_dims) != 2:
            raise ValueError(f"decoder_dims and decoder_guidance_dims: two values each, got {dims}, {guide_dims}")
        self.stages = nn.ModuleList([GuidedUpsample(in_dim, width, guide_dims[0], dims[0], 2),
                                     GuidedUpsample(dims[0], width, guide_dims[1], dims[1], 4)])
        self.out = nn.Conv2d(dims[1], 1, 3, padding=1)

    def forward(self, x: torch.Tensor, layers: Sequence[torch.Tensor]) -> torch.Tensor:
        """x: (B, T, h, w, C); layers: block maps, deepest first -> (B, T, 4h, 4w) logits."""
        x = x.permute(0, 1, 4, 2, 3)
        for stage, layer in zip(self.stages, layers):
            x = stage(x, layer)
        batch, classes = x.shape[:2]
        return self.out(x.flatten(0, 1)).reshape(batch, classes, *x.shape[-2:])
