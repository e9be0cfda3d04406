"""Temporal heads on a CLIP's frame embeddings: how a clip of T frames becomes one embedding (or a pair score).

CLIP4Clip (Luo et al. 2021, "CLIP4Clip: An Empirical Study of CLIP for End to End Video Clip Retrieval") §3.3:

- ``meanP``: the mean of the unit-normalised frame embeddings, normalised again (parameter-free);
- ``seqLSTM``: an LSTM over the frames, its outputs added to the frame embeddings (residual), then meanP;
- ``seqTransf``: frame position embeddings + a temporal transformer, residual, then meanP. Its blocks and position
  embeddings start as copies of the CLIP text transformer's first blocks and positional embedding (same width:
  the joint dimension equals the text width in every CLIP; otherwise they start random and ``init`` says so);
- ``tightTransf``: a cross encoder over the text's tokens and the frames (type + position embeddings, a learnt
  first token, a linear score): one logit per (text, video) pair instead of a cosine.

ActionCLIP's "Transf" fusion (a temporal transformer + residual + mean) is ``seqTransf`` with its own depth and a
random start. Kind ``video/temporal``: ``VideoHead(config[, clip])``, the tuned CLIP carried when it was trained.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from open_clip.transformer import Transformer
from torch import nn

from ..errors import ConfigError
from .registry import HeadKind, register_head_kind

KIND = "video/temporal"
POOLINGS = ("meanP", "seqLSTM", "seqTransf", "tightTransf")


@dataclass
class VideoHeadConfig:
    """A temporal head's architecture (JSON in the head file).

    Args:
        pooling: one of ``POOLINGS``.
        width: the joint embedding dimension D of the CLIP.
        layers: temporal (seqTransf) or cross (tightTransf) transformer blocks.
        heads: attention heads of those blocks.
        max_frames: frame position embeddings.
        method: the objective that trained it (clip4clip, actionclip, videoclip).
        init: how the temporal transformer started (``text``: copied from the CLIP text transformer; ``random``).
        has_clip: the head carries the tuned CLIP.
    """

    pooling: str = "meanP"
    width: int = 512
    layers: int = 4
    heads: int = 8
    max_frames: int = 32
    method: str = "clip4clip"
    init: str = "random"
    has_clip: bool = False


def mean_pool(frames: torch.Tensor) -> torch.Tensor:
    """CLIP4Clip's meanP: (B, T, D) frame embeddings -> normalise each, average over T, normalise."""
    return F.normalize(F.normalize(frames, dim=-1).mean(dim=1), dim=-1)


class TightCross(nn.Module):
    """tightTransf's cross encoder: [first token; text tokens + type 0; frames + position + type 1] -> one score."""

    def __init__(self, width: int, layers: int, heads: int, max_frames: int) -> None:
        super().__init__()
        self.first = nn.Parameter(torch.zeros(width))
        self.types = nn.Embedding(2, width)
        self.frame_position = nn.Embedding(max_frames, width)
        block = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.score = nn.Linear(width, 1)

    def forward(self, text: torch.Tensor, text_pad: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """text (Bt, L, D) with padding mask (Bt, L) True where padded; frames (Bv, T, D) -> logits (Bt, Bv)."""
        bt, bv, length, steps = text.shape[0], frames.shape[0], text.shape[1], frames.shape[1]
        t = (text + self.types.weight[0])[:, None].expand(bt, bv, length, -1)
        positions = self.frame_position.weight[:steps] + self.types.weight[1]
        v = (frames + positions)[None].expand(bt, bv, steps, -1)
        first = self.first.expand(bt, bv, 1, -1)
        tokens = torch.cat([first, t, v], dim=2).reshape(bt * bv, 1 + length + steps, -1)
        pad = torch.cat([torch.zeros(bt, 1, dtype=torch.bool, device=text.device), text_pad,
                         torch.zeros(bt, steps, dtype=torch.bool, device=text.device)], dim=1)
        pad = pad[:, None].expand(bt, bv, -1).reshape(bt * bv, -1)
        out = self.encoder(tokens, src_key_padding_mask=pad)
        return self.score(out[:, 0]).reshape(bt, bv)


class VideoHead(nn.Module):
    """Frames' CLIP embeddings -> a video embedding (meanP, seqLSTM, seqTransf) or pair scores (tightTransf)."""

    def __init__(self, config: VideoHeadConfig, clip: nn.Module | None = None) -> None:
        super().__init__()
        if config.pooling not in POOLINGS:
            raise ConfigError(f"video head pooling {config.pooling!r}: expected one of {list(POOLINGS)}")
        self.config = config
        d = config.width
        if config.pooling == "seqLSTM":
            self.lstm = nn.LSTM(d, d, batch_first=True)
        if config.pooling == "seqTransf":
            self.frame_position = nn.Embedding(config.max_frames, d)
            self.transformer = Transformer(d, config.layers, config.heads)
        if config.pooling == "tightTransf":
            self.cross = TightCross(d, config.layers, config.heads, config.max_frames)
        self.clip = clip

    @property
    def tight(self) -> bool:
        return self.config.pooling == "tightTransf"

    def clip_model(self, bundle: Any) -> nn.Module:
        """The CLIP under this head: its own tuned one, or the backbone's."""
        return self.clip if self.clip is not None else bundle.model

    def pool(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, T, D) frame embeddings (unnormalised) -> (B, D) unit-norm video embeddings.

        tightTransf has no video embedding of its own (it scores pairs): meanP stands in for it (search, classify).
        """
        if frames.shape[1] > self.config.max_frames:
            raise ConfigError(f"{frames.shape[1]} frames; this head has position embeddings for at most "
                              f"{self.config.max_frames}")
        if self.config.pooling == "seqLSTM":
            frames = self.lstm(frames)[0] + frames
        elif self.config.pooling == "seqTransf":
            positions = self.frame_position.weight[:frames.shape[1]].to(frames.dtype)
            frames = self.transformer(frames + positions) + frames
        return mean_pool(frames)

    def pair_logits(self, text_tokens: torch.Tensor, text_pad: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """tightTransf: (Bt, Bv) scores of every text against every video."""
        return self.cross(text_tokens, text_pad, frames)


def text_transformer(clip: nn.Module) -> tuple[Transformer | None, torch.Tensor | None]:
    """The CLIP's open_clip text transformer and positional embedding: on the model itself (``CLIP``) or on its
    text tower (``CustomTextCLIP``: EVA02, SigLIP); (None, None) for a tower of another kind (HF text models)."""
    for owner in (clip, getattr(clip, "text", None)):
        text = getattr(owner, "transformer", None)
        if isinstance(text, Transformer):
            return text, getattr(owner, "positional_embedding", None)
    return None, None


def init_from_text(head: VideoHead, clip: nn.Module) -> bool:
    """Copy the CLIP text transformer's first blocks and positional embedding into a seqTransf head (CLIP4Clip's
    start). False (left random) when the widths differ or the CLIP has no open_clip text transformer."""
    text, positional = text_transformer(clip)
    if head.config.pooling != "seqTransf" or text is None or positional is None:
        return False
    if text.width != head.config.width or len(text.resblocks) < head.config.layers:
        return False
    if text.resblocks[0].attn.num_heads != head.config.heads:
        return False
    with torch.no_grad():
        for mine, theirs in zip(head.transformer.resblocks, text.resblocks):
            mine.load_state_dict(theirs.state_dict())
        rows = min(head.config.max_frames, positional.shape[0])
        head.frame_position.weight[:rows].copy_(positional[:rows])
    head.config.init = "text"
    return True


def text_tokens(clip: nn.Module, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every token's output of an open_clip text tower, projected to the joint space: (B, L, D), and the padding
    mask (B, L) True after each text's end token (tightTransf's text side)."""
    if not isinstance(getattr(clip, "transformer", None), Transformer) or not hasattr(clip, "token_embedding"):
        raise ConfigError("tightTransf needs an open_clip text tower (token outputs); use seqTransf or meanP")
    x = clip.token_embedding(tokens) + clip.positional_embedding
    x = clip.ln_final(clip.transformer(x, attn_mask=clip.attn_mask))
    projection = clip.text_projection
    x = projection(x) if isinstance(projection, nn.Linear) else x @ projection if projection is not None else x
    end = tokens.argmax(dim=-1)   # open_clip's end token has the largest id
    pad = torch.arange(tokens.shape[1], device=tokens.device)[None] > end[:, None]
    return x, pad


def _build(config: Mapping[str, Any], bundle: Any, classes: list[str] | None) -> VideoHead:
    cfg = VideoHeadConfig(**dict(config))
    return VideoHead(cfg, copy.deepcopy(bundle.model) if cfg.has_clip else None)


def _config_of(head: nn.Module) -> dict[str, Any]:
    return {**asdict(head.config), "has_clip": head.clip is not None}


register_head_kind(HeadKind(KIND, VideoHead, _build, _config_of))
