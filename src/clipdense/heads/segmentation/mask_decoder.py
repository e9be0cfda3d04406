"""Mask2Former's transformer decoder (Cheng et al., CVPR 2022), written from the paper: N learnt queries that
attend to a multi-scale memory one level per layer (round robin, coarsest first), each cross-attention restricted
to the foreground of the mask the previous layer predicted ("masked attention"), then self-attention and an FFN.
After the query initialisation and after every layer, a shared prediction head gives each query a class embedding
and a mask (the dot product of its mask embedding with the per-pixel mask features).

The pixel decoder here is an FPN over the CLIP's own block maps (``heads.detection.pyramid.ViTPyramid``), the
variant the Mask2Former paper reports beside its deformable-attention one; FC-CLIP builds its generator on the
frozen CLIP in the same spirit.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def sine_positions(height: int, width: int, channels: int, device: torch.device) -> torch.Tensor:
    """(channels, H, W) DETR's normalised 2-D sine position code (half the channels for y, half for x)."""
    half = channels // 2
    ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) / height * 2 * math.pi
    xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width * 2 * math.pi
    freq = 10000 ** (2 * (torch.arange(half, device=device) // 2) / half)
    py, px = ys[:, None] / freq, xs[:, None] / freq                       # (H, half), (W, half)
    py = torch.stack([py[:, 0::2].sin(), py[:, 1::2].cos()], dim=2).flatten(1)
    px = torch.stack([px[:, 0::2].sin(), px[:, 1::2].cos()], dim=2).flatten(1)
    code = torch.cat([py[:, None, :].expand(height, width, half), px[None, :, :].expand(height, width, half)], -1)
    if code.shape[-1] < channels:                                        # odd channel counts: pad with zeros
        code = F.pad(code, (0, channels - code.shape[-1]))
    return code.permute(2, 0, 1)


class MLP(nn.Module):
    """Linear layers with ReLU between (Mask2Former's 3-layer mask-embedding MLP)."""

    def __init__(self, dims: Sequence[int]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for index, layer in enumerate(self.layers):
            x = layer(x)
            if index < len(self.layers) - 1:
                x = F.relu(x)
        return x


class DecoderLayer(nn.Module):
    """Masked cross-attention -> self-attention -> FFN, each with a residual and a post-LayerNorm."""

    def __init__(self, dim: int, heads: int, ffn_dim: int) -> None:
        super().__init__()
        self.cross = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.self_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.ReLU(), nn.Linear(ffn_dim, dim))
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(3))

    def forward(self, queries: torch.Tensor, query_pos: torch.Tensor, memory: torch.Tensor, memory_pos: torch.Tensor,
                blocked: torch.Tensor | None) -> torch.Tensor:
        """``queries`` (B, N, C); ``memory`` (B, L, C); ``blocked`` (B * heads, N, L) True = may not attend."""
        out, _ = self.cross(queries + query_pos, memory + memory_pos, memory, attn_mask=blocked, need_weights=False)
        queries = self.norms[0](queries + out)
        q = queries + query_pos
        out, _ = self.self_attn(q, q, queries, need_weights=False)
        queries = self.norms[1](queries + out)
        return self.norms[2](queries + self.ffn(queries))


@dataclass
class QueryPrediction:
    """One prediction of every query: class embeddings (B, N, D) and mask logits (B, N, H, W) at the mask
    features' resolution."""

    embedding: torch.Tensor
    masks: torch.Tensor


class MaskedAttentionDecoder(nn.Module):
    """Learnt queries + ``layers`` decoder layers over ``levels`` memory maps (round robin).

    Args:
        dim: channels of the queries and the memory maps.
        queries: number of learnt queries N.
        layers: decoder layers (Mask2Former: 9 = three rounds over three levels).
        heads / ffn_dim: attention heads and FFN width.
        levels: memory maps per forward.
        embed_dim: width of the class embedding (the CLIP's joint space).
        mask_dim: channels of the mask features.
    """

    def __init__(self, dim: int, queries: int, layers: int, heads: int, ffn_dim: int, levels: int, embed_dim: int,
                 mask_dim: int) -> None:
        super().__init__()
        self.heads = heads
        self.query_feat = nn.Embedding(queries, dim)
        self.query_pos = nn.Embedding(queries, dim)
        self.level_embed = nn.Embedding(levels, dim)
        self.layers = nn.ModuleList(DecoderLayer(dim, heads, ffn_dim) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.class_embed = nn.Linear(dim, embed_dim)
        self.mask_embed = MLP([dim, dim, dim, mask_dim])

    def predict(self, queries: torch.Tensor, mask_features: torch.Tensor,
                target: tuple[int, int] | None) -> tuple[QueryPrediction, torch.Tensor | None]:
        """The shared prediction head, and the next layer's attention mask at ``target`` (h, w) resolution."""
        x = self.norm(queries)
        masks = torch.einsum("bnc,bchw->bnhw", self.mask_embed(x), mask_features)
        if target is None:
            return QueryPrediction(self.class_embed(x), masks), None
        small = F.interpolate(masks.detach(), size=target, mode="bilinear", align_corners=False)
        blocked = (small.sigmoid() < 0.5).flatten(2)                                 # (B, N, L)
        blocked[blocked.all(-1)] = False                           # a query with no foreground attends everywhere
        blocked = blocked.repeat_interleave(self.heads, dim=0)
        return QueryPrediction(self.class_embed(x), masks), blocked

    def forward(self, memories: Sequence[torch.Tensor], mask_features: torch.Tensor) -> list[QueryPrediction]:
        """``memories``: (B, C, h_l, w_l) maps, coarsest first; ``mask_features`` (B, mask_dim, H, W).
        Returns the initial prediction and one per layer (the last is the output, the others deep supervision)."""
        batch = mask_features.shape[0]
        flat, positions, sizes = [], [], []
        for level, memory in enumerate(memories):
            h, w = memory.shape[-2:]
            sizes.append((h, w))
            positions.append(sine_positions(h, w, memory.shape[1], memory.device).flatten(1).T[None]
                             .expand(batch, -1, -1))
            flat.append(memory.flatten(2).transpose(1, 2) + self.level_embed.weight[level][None, None])
        queries = self.query_feat.weight[None].expand(batch, -1, -1)
        query_pos = self.query_pos.weight[None].expand(batch, -1, -1)
        prediction, blocked = self.predict(queries, mask_features, sizes[0])
        out = [prediction]
        for index, layer in enumerate(self.layers):
            level = index % len(memories)
            queries = layer(queries, query_pos, flat[level], positions[level], blocked)
            following = sizes[(index + 1) % len(memories)] if index + 1 < len(self.layers) else None
            prediction, blocked = self.predict(queries, mask_features, following)
            out.append(prediction)
        return out
