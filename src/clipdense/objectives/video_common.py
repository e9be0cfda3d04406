"""What the video objectives share: the clip's view (one crop for every frame), frames through the image tower, the
temporal head they train and CLIP's lower learning rate (CLIP4Clip's ``coef_lr``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from ..data.transforms import random_crop_window, resize_frames, uniform
from ..data.video import check_frames
from ..errors import ConfigError
from ..heads.video import VideoHead, VideoHeadConfig, init_from_text, text_transformer
from ..models.towers import tower_facts
from .base import ClipTraining, HeadExport, scale_lr
from .locking import lock_image_blocks, lock_text_blocks
from .views import OPENAI_MEAN, OPENAI_STD

CLIP_REGIMES = ("tune", "frozen")


@dataclass
class VideoView:
    """One random-resized crop window (the same for every frame) to ``size`` pixels, optional flip, normalised:
    (T, H, W, 3) uint8 -> (T, 3, size, size) float."""

    size: int
    scale: tuple[float, float] = (0.9, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = False
    mean: Sequence[float] = OPENAI_MEAN
    std: Sequence[float] = OPENAI_STD

    def __call__(self, frames: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        height, width = frames.shape[1], frames.shape[2]
        top, left, h, w = random_crop_window(width, height, self.scale, self.ratio, generator)
        frames = resize_frames(frames[:, top:top + h, left:left + w], (self.size, self.size))
        if self.flip and uniform(generator, 0, 1) < 0.5:
            frames = frames.flip(2)
        return normalise_frames(frames, self.mean, self.std)


def normalise_frames(frames: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, 3, H, W) float, normalised like the image tower's input."""
    x = frames.permute(0, 3, 1, 2).float() / 255.0
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def center_view(frames: torch.Tensor, size: int, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """The inference view: frames resized to ``size`` x ``size`` whole (the world's clips are square), normalised."""
    frames = check_frames(frames, "video")
    return normalise_frames(resize_frames(frames, (size, size)), mean, std)


def encode_frames(clip: nn.Module, video: torch.Tensor) -> torch.Tensor:
    """(B, T, 3, S, S) -> (B, T, D) frame embeddings from the image tower (unnormalised), one batched forward."""
    batch, steps = video.shape[:2]
    return clip.encode_image(video.flatten(0, 1)).reshape(batch, steps, -1)


def build_video_head(bundle: Any, pooling: str, layers: int, max_frames: int, method: str,
                     from_text: bool) -> VideoHead:
    """A temporal head at the CLIP's joint width; seqTransf starts from the text transformer when ``from_text``."""
    model = bundle.model
    width = tower_facts(model).output_dim
    text = text_transformer(model)[0]
    heads = text.resblocks[0].attn.num_heads if from_text and text is not None else max(1, width // 64)
    if width % heads:
        heads = 1
    head = VideoHead(VideoHeadConfig(pooling=pooling, width=width, layers=layers, heads=heads,
                                     max_frames=max_frames, method=method))
    if from_text:
        init_from_text(head, model)
    return head


def check_regime(regime: str, coef_lr: float) -> None:
    if regime not in CLIP_REGIMES:
        raise ConfigError(f"--objective-arg clip={regime}: expected one of {list(CLIP_REGIMES)}")
    if not 0.0 < coef_lr <= 1.0:
        raise ConfigError(f"--objective-arg coef_lr={coef_lr}: expected a learning-rate factor in (0, 1]")


def attach_clip(head: VideoHead, model: nn.Module, regime: str, coef_lr: float) -> None:
    """``tune``: the CLIP trains at ``coef_lr`` times the learning rate and travels with the head; ``frozen``: it
    never changes (the objective names it in ``frozen_modules``)."""
    if regime == "tune":
        head.clip = model
        scale_lr(model, coef_lr)
    else:
        model.requires_grad_(False)


class VideoTraining(ClipTraining):
    """What the video objectives share as objectives: a temporal head (``self.head``, the export) on a CLIP
    (``self.model``) that trains at ``coef_lr`` times the learning rate (``clip=tune``) or stays frozen."""

    head: VideoHead

    def _attach_head(self, bundle: Any, pooling: str, from_text: bool) -> None:
        """Check the shared options, build the temporal head and tie the CLIP to it in the chosen regime."""
        o = self.options
        if not 1 <= o.layers <= 24 or not 2 <= o.max_frames <= 256:
            raise ConfigError("--objective-arg layers: expected 1..24; max_frames: expected 2..256")
        check_regime(o.clip, o.coef_lr)
        self.bundle, self.model, self.tokenizer = bundle, bundle.model, bundle.tokenizer
        self.head = build_video_head(bundle, pooling, o.layers, o.max_frames, self.name, from_text)
        attach_clip(self.head, self.model, o.clip, o.coef_lr)

    @property
    def tuned(self) -> bool:
        return self.options.clip == "tune"

    def exported_model(self) -> nn.Module:
        return self.head

    def exported_head(self) -> HeadExport:
        return HeadExport(self.head, self.bundle)

    def frozen_modules(self) -> Sequence[nn.Module]:
        return () if self.tuned else (self.model,)

    def lock_blocks(self, image_blocks: int, text_blocks: int) -> None:
        if self.tuned:
            lock_image_blocks(self.model, image_blocks)
            lock_text_blocks(self.model, text_blocks)
        else:   # a frozen CLIP: only the head trains, so locking is refused like any head objective's
            super(ClipTraining, self).lock_blocks(image_blocks, text_blocks)

    def train(self, mode: bool = True) -> "VideoTraining":
        super().train(mode)
        if not self.tuned:
            self.model.eval()
        return self
