"""CLIP4Clip: text-video retrieval from a CLIP's frame embeddings and a temporal similarity head.

Luo, Ji, Zhong, Chen, Lei, Duan, Li 2021, "CLIP4Clip: An Empirical Study of CLIP for End to End Video Clip
Retrieval". The frames of each clip go through the CLIP image tower in one batch; the head (``heads/video.py``:
meanP, seqLSTM, seqTransf, tightTransf) turns them into a video embedding, scored against the caption's by cosine
times the CLIP's temperature (tightTransf: the cross encoder's logit for every text-video pair of the batch). The loss
is the symmetric cross-entropy over the batch's B x B similarity matrix (§3.4), the CLIP trains at ``coef_lr`` times
the learning rate (1e-3 in the paper: its weights barely move while the new head learns at full rate), and the seqTransf
head starts from the CLIP text transformer's first blocks (§4.1).

Batch: ``{"video": (B, T, 3, S, S), "text": (B, L)}``; the reader samples T frames (``--data msrvtt:...,frames=T``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..data.sample import Sample
from ..heads.video import POOLINGS, text_tokens
from ..errors import ConfigError
from .base import DataInfo, SampleTransform
from .clip import contrastive_loss
from .video_common import VideoTraining, VideoView, encode_frames
from .views import Tokenize, model_image_stats


@dataclass
class Clip4ClipOptions:
    """Options of the clip4clip objective (``--objective-arg KEY=VALUE``).

    Args:
        head: similarity head: meanP, seqLSTM, seqTransf or tightTransf.
        layers: blocks of the seqTransf / tightTransf transformer (CLIP4Clip: 4).
        max_frames: frame position embeddings (at least the reader's frame count).
        clip: ``tune`` (the CLIP trains at coef_lr x lr, as in the paper) or ``frozen``.
        coef_lr: the CLIP's learning-rate factor (1e-3 in the paper).
        from_text: start seqTransf from the CLIP text transformer's blocks and positional embedding.
        crop_scale: random-resized-crop area range of the clip (one window for every frame).
    """

    head: str = "seqTransf"
    layers: int = 4
    max_frames: int = 32
    clip: str = "tune"
    coef_lr: float = 1e-3
    from_text: bool = True
    crop_scale: tuple[float, float] = (0.9, 1.0)


def symmetric_ce(logits: torch.Tensor) -> torch.Tensor:
    """Mean of the text->video and video->text cross-entropies of a square logit matrix (diagonal positives)."""
    target = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits.float(), target) + F.cross_entropy(logits.float().t(), target))


@dataclass
class VideoTextTransform:
    """One sample -> the clip's view (T, 3, S, S) and its caption's tokens."""

    view: VideoView
    tokenize: Tokenize

    def __call__(self, sample: Sample, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return {"video": self.view(sample.frames, generator), "text": self.tokenize(sample.caption)}


class Clip4ClipObjective(VideoTraining):
    """A temporal head on a CLIP (tuned slowly or frozen), trained on video-caption pairs."""

    name: ClassVar[str] = "clip4clip"
    needs: ClassVar[frozenset[str]] = frozenset({"caption", "frames"})
    Options: ClassVar[type] = Clip4ClipOptions

    def __init__(self, bundle: Any, options: Clip4ClipOptions | None = None, info: DataInfo | None = None,
                 total_steps: int = 1) -> None:
        super().__init__()
        o = self.options = options or Clip4ClipOptions()
        if o.head not in POOLINGS:
            raise ConfigError(f"--objective-arg head={o.head}: expected one of {list(POOLINGS)}")
        self._attach_head(bundle, o.head, o.from_text)
        # the cross encoder scores pairs itself: the tuned CLIP's logit scale gets no gradient under DDP
        self.ddp_find_unused_parameters = self.head.tight

    def logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B_text, B_video) scores of every caption against every clip of the batch."""
        with torch.set_grad_enabled(self.tuned and torch.is_grad_enabled()):
            frames = encode_frames(self.model, batch["video"])
            if self.head.tight:
                tokens, pad = text_tokens(self.model, batch["text"])
            else:
                text = self.model.encode_text(batch["text"], normalize=True)
        if self.head.tight:
            return self.head.pair_logits(tokens, pad, frames)
        return self.model.logit_scale.exp().clamp(max=100.0) * text @ self.head.pool(frames).t()

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.head.tight:
            loss = symmetric_ce(self.logits(batch))
        else:   # the loose heads gather across ranks as CLIP does
            with torch.set_grad_enabled(self.tuned and torch.is_grad_enabled()):
                frames = encode_frames(self.model, batch["video"])
                text = self.model.encode_text(batch["text"], normalize=True)
            scale = self.model.logit_scale.exp().clamp(max=100.0)
            loss = contrastive_loss(self.head.pool(frames), text, scale)
        return {"loss": loss, "clip4clip_loss": loss.detach()}

    def sample_transform(self) -> SampleTransform:
        size, mean, std = model_image_stats(self.model)
        view = VideoView(size, scale=tuple(float(x) for x in self.options.crop_scale), mean=mean, std=std)
        return VideoTextTransform(view, Tokenize(self.tokenizer))

    def describe(self) -> dict[str, Any]:
        return {**vars(self.options), "init": self.head.config.init}
