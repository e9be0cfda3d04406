"""VideoCLIP: contrastive video-text pretraining with overlapping positives and retrieval-augmented batches.

Xu, Ghosh, Huang, Okhonko, Aghajanyan, Metze, Zettlemoyer, Feichtenhofer 2021, "VideoCLIP: Contrastive
Pre-training for Zero-shot Video-Text Understanding". Adapted to clipdense:

- **Towers.** The paper feeds frozen S3D features to a trainable video transformer; here the frames go through the
  CLIP image tower (frozen, or tuned at ``coef_lr`` x lr as CLIP4Clip does), then a temporal transformer over the
  frame embeddings (``heads/video.py`` seqTransf: frame positions, residual, mean), and the caption through the CLIP
  text tower. The loss is the symmetric InfoNCE over the batch (``contrastive_loss``, CLIP's temperature).
- **Temporally overlapping positives** (§3.2). The paper samples a text segment, then a video clip of random length
  whose centre lies inside it, so positives overlap without being aligned. The world's clips carry one caption for
  the whole clip, so every sub-clip overlaps that caption: per sample we draw a random contiguous window of the
  decoded frames (at least ``min_window`` of them) and pair it with the clip's caption. The window is resampled to
  the reader's frame count (frames repeat when it is shorter) so the batch stacks.
- **Retrieval-augmented batches** (§3.3). The paper clusters the whole corpus by video embedding once per epoch and
  builds each batch from one cluster, so in-batch negatives are hard. clipdense's engine offers no batch-sampler
  hook, so the mining happens inside the step: the engine's batch is a random *candidate pool*; its first clip is
  the anchor (the pool is shuffled, so that is a random clip), and the step trains on the anchor and its
  ``batch_keep - 1`` nearest clips by the current video embedding (cosine). Deterministic given the pool, so resume
  stays exact.

Batch: ``{"video": (B, T, 3, S, S), "text": (B, L)}`` from video-caption data (``--data msrvtt:...,frames=T``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from ..data.sample import Sample
from ..errors import ConfigError
from .base import DataInfo, SampleTransform
from .clip import contrastive_loss
from .clip4clip import Clip4ClipObjective, Clip4ClipOptions
from .video_common import VideoView, encode_frames
from .views import Tokenize, model_image_stats


@dataclass
class VideoClipOptions(Clip4ClipOptions):
    """Options of the videoclip objective (``--objective-arg KEY=VALUE``); those of clip4clip plus:

    Args:
        min_window: the shortest sub-clip, as a fraction of the decoded frames (0 < f <= 1; 0.5: at least half).
        retrieval_batches: train each step on the pool's anchor and its nearest clips (hard negatives).
        batch_keep: how many clips of the pool a retrieval-augmented step keeps (0: half the pool, at least 2).
    """

    min_window: float = 0.5
    retrieval_batches: bool = False
    batch_keep: int = 0

    def __post_init__(self) -> None:   # checked before any data or model is opened
        if self.head == "tightTransf":
            raise ConfigError("--objective-arg head=tightTransf: videoclip scores by cosine; expected one of "
                              "meanP, seqLSTM, seqTransf")
        if not 0.0 < self.min_window <= 1.0:
            raise ConfigError(f"--objective-arg min_window={self.min_window}: expected a fraction in (0, 1]")
        if self.batch_keep < 0 or self.batch_keep == 1:
            raise ConfigError(f"--objective-arg batch_keep={self.batch_keep}: expected 0 (half the pool) or >= 2")


def overlap_window(frames: int, generator: torch.Generator, min_fraction: float = 0.5) -> tuple[int, int]:
    """A random contiguous window ``(start, length)`` of ``frames`` frames, ``length >= ceil(min_fraction *
    frames)``: the video side of an overlapping positive."""
    shortest = min(frames, max(1, math.ceil(frames * min_fraction - 1e-9)))
    length = int(torch.randint(shortest, frames + 1, (), generator=generator))
    start = int(torch.randint(0, frames - length + 1, (), generator=generator))
    return start, length


def window_indices(start: int, length: int, steps: int) -> torch.Tensor:
    """``steps`` frame indices spread evenly over the window (in order, repeated when the window is shorter)."""
    return start + torch.linspace(0, length - 1, steps).round().long()


def nearest_batch(embeddings: torch.Tensor, anchor: int, keep: int) -> torch.Tensor:
    """Indices of the ``anchor`` and its ``keep - 1`` nearest pool members by cosine, anchor first, nearest next."""
    unit = F.normalize(embeddings.detach().float(), dim=-1)
    similarity = unit @ unit[anchor]
    similarity[anchor] = math.inf
    return similarity.topk(min(keep, len(unit))).indices


@dataclass
class OverlapTransform:
    """One sample -> a random sub-clip (at least ``min_fraction`` of its frames) and the caption it overlaps."""

    view: VideoView
    tokenize: Tokenize
    min_fraction: float

    def __call__(self, sample: Sample, generator: torch.Generator) -> dict[str, torch.Tensor]:
        frames = sample.frames
        start, length = overlap_window(len(frames), generator, self.min_fraction)
        window = frames[window_indices(start, length, len(frames))]
        return {"video": self.view(window, generator), "text": self.tokenize(sample.caption)}


class VideoClipObjective(Clip4ClipObjective):
    """A video transformer on a CLIP, trained on overlapping sub-clip/caption pairs, optionally on mined batches."""

    name: ClassVar[str] = "videoclip"
    Options: ClassVar[type] = VideoClipOptions

    def __init__(self, bundle: Any, options: VideoClipOptions | None = None, info: DataInfo | None = None,
                 total_steps: int = 1) -> None:
        super().__init__(bundle, options or VideoClipOptions(), info, total_steps)

    def keep(self, pool: int) -> int:
        """How many clips of a pool of ``pool`` a retrieval-augmented step trains on."""
        return min(pool, self.options.batch_keep or max(2, pool // 2))

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        with torch.set_grad_enabled(self.tuned and torch.is_grad_enabled()):
            frames = encode_frames(self.model, batch["video"])
            text = self.model.encode_text(batch["text"], normalize=True)
        video = self.head.pool(frames)
        if self.options.retrieval_batches and self.keep(len(video)) < len(video):
            chosen = nearest_batch(video, 0, self.keep(len(video)))
            video, text = video[chosen], text[chosen]
        scale = self.model.logit_scale.exp().clamp(max=100.0)
        loss = contrastive_loss(video, text, scale)
        with torch.no_grad():   # how hard the negatives are: mean cosine between different clips of the step
            unit = F.normalize(video.detach().float(), dim=-1)
            n = len(unit)
            mean_cos = (unit @ unit.t()).sum().sub(n).div(max(1, n * (n - 1)))
        return {"loss": loss, "videoclip_loss": loss.detach(), "negative_cosine": mean_cos}

    def sample_transform(self) -> SampleTransform:
        size, mean, std = model_image_stats(self.model)
        view = VideoView(size, scale=tuple(float(x) for x in self.options.crop_scale), mean=mean, std=std)
        return OverlapTransform(view, Tokenize(self.tokenizer), float(self.options.min_window))
