"""Geometric transforms of a ``Sample``: boxes, instance masks, label maps, depth maps and video frames move with the
pixels.

Every random choice draws from the ``generator`` passed in (the engine seeds one per sample), so a
resumed run sees the same crops. Boxes that leave the image (or shrink below ``min_box_size``
pixels on a side) are dropped together with their label and mask.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from PIL import Image

from ..errors import ConfigError
from .sample import Sample

SampleOp = Callable[[Sample, torch.Generator], Sample]


def uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def _nearest(tensor: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour resize of (N, H, W) or (H, W) integer/bool maps (no new values appear)."""
    flat = tensor.unsqueeze(0) if tensor.ndim == 2 else tensor
    if flat.shape[0] == 0:
        out = torch.zeros((0, *size), dtype=tensor.dtype)
    else:
        out = F.interpolate(flat[None].float(), size=size, mode="nearest")[0].to(tensor.dtype)
    return out[0] if tensor.ndim == 2 else out


def picture_size(sample: Sample) -> tuple[int, int]:
    """(width, height) of the sample's picture: its image, or its frames (T, H, W, 3) when it is a video."""
    if sample.image is not None:
        return sample.image.width, sample.image.height
    if sample.frames is not None:
        return int(sample.frames.shape[2]), int(sample.frames.shape[1])
    raise ConfigError(f"sample {sample.key}: no image or frames to transform")


def resize_frames(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(T, H, W, 3) uint8 frames resized to ``size`` (H, W): bicubic with antialias, every frame alike."""
    if tuple(frames.shape[1:3]) == tuple(size):
        return frames
    moved = F.interpolate(frames.permute(0, 3, 1, 2).float(), size=size, mode="bicubic", align_corners=False,
                          antialias=True)
    return moved.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def _frames(sample: Sample, op: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor | None:
    return op(sample.frames) if sample.frames is not None else None


def keep_boxes(sample: Sample, keep: torch.Tensor) -> Sample:
    """The sample with only the boxes (and their labels, masks and phrase indices) where ``keep`` is True."""
    return sample.replace(boxes=sample.boxes[keep] if sample.boxes is not None else None,
                          labels=sample.labels[keep] if sample.labels is not None else None,
                          masks=sample.masks[keep] if sample.masks is not None else None,
                          phrases=sample.phrases.select(keep) if sample.phrases is not None else None)


def resize(sample: Sample, size: tuple[int, int]) -> Sample:
    """Resize to ``size`` (H, W): bicubic pixels, scaled boxes, nearest masks and label map."""
    height, width = int(size[0]), int(size[1])
    if height < 1 or width < 1:
        raise ConfigError(f"resize: expected a positive size, got {height}x{width}")
    old_w, old_h = picture_size(sample)
    sx, sy = width / old_w, height / old_h
    image = sample.image.resize((width, height), resample=3) if sample.image is not None else None  # PIL bicubic
    boxes = sample.boxes * torch.tensor([sx, sy, sx, sy]) if sample.boxes is not None else None
    masks = _nearest(sample.masks, (height, width)) if sample.masks is not None else None
    semantic = _nearest(sample.semantic, (height, width)) if sample.semantic is not None else None
    depth = _nearest(sample.depth, (height, width)) if sample.depth is not None else None   # no mixed depths
    return sample.replace(image=image, boxes=boxes, masks=masks, semantic=semantic, depth=depth,
                          frames=_frames(sample, lambda f: resize_frames(f, (height, width))))


def letterbox_fit(width: float, height: float, size: tuple[int, int]) -> tuple[float, int, int]:
    """(scale, new width, new height) of a ``width`` x ``height`` picture (pixels, or a box's sides) fitted into
    ``size`` (H, W) with its aspect kept: the one letterbox rule of the student image, CLIPSelf's teacher crops and
    the evaluation's crops baseline."""
    out_h, out_w = size
    scale = min(out_h / max(height, 1e-6), out_w / max(width, 1e-6))
    return scale, max(1, min(out_w, round(width * scale))), max(1, min(out_h, round(height * scale)))


@dataclass
class Letterbox:
    """Longest side resized to ``size`` (aspect kept), the rest padded black at the bottom and right (CLIPSelf's
    ResizeLongest). Boxes scale by the exact factor (as CLIPSelf maps its boxes), masks and label maps move with
    the pixels; the padding has no mask and the ``ignore_index`` label. No box leaves the image."""

    size: int
    ignore_index: int = 255

    def fit(self, width: float, height: float) -> tuple[float, int, int]:
        """(scale, new width, new height) of the picture inside the square canvas."""
        return letterbox_fit(width, height, (self.size, self.size))

    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample:
        scale, new_w, new_h = self.fit(*picture_size(sample))
        canvas = None
        if sample.image is not None:
            canvas = Image.new(sample.image.mode, (self.size, self.size), 0)
            canvas.paste(sample.image.resize((new_w, new_h), resample=Image.BICUBIC), (0, 0))
        boxes = sample.boxes * scale if sample.boxes is not None else None
        masks = self._pad(_nearest(sample.masks, (new_h, new_w)), 0) if sample.masks is not None else None
        semantic = (self._pad(_nearest(sample.semantic, (new_h, new_w)), self.ignore_index)
                    if sample.semantic is not None else None)
        frames = _frames(sample, lambda f: F.pad(resize_frames(f, (new_h, new_w)),   # (T, H, W, 3): pad H and W
                                                  (0, 0, 0, self.size - new_w, 0, self.size - new_h)))
        depth = self._pad(_nearest(sample.depth, (new_h, new_w)), 0) if sample.depth is not None else None  # 0: unknown
        return sample.replace(image=canvas, boxes=boxes, masks=masks, semantic=semantic, frames=frames, depth=depth)

    def _pad(self, tensor: torch.Tensor, value: int) -> torch.Tensor:
        return F.pad(tensor, (0, self.size - tensor.shape[-1], 0, self.size - tensor.shape[-2]), value=value)


def hflip(sample: Sample) -> Sample:
    """Mirror left-right; box x-coordinates become ``width - x``."""
    width = picture_size(sample)[0]
    boxes = None
    if sample.boxes is not None:
        boxes = sample.boxes.clone()
        boxes[:, [0, 2]] = width - sample.boxes[:, [2, 0]]
    return sample.replace(image=TF.hflip(sample.image) if sample.image is not None else None, boxes=boxes,
                          frames=_frames(sample, lambda f: f.flip(2)),
                          masks=sample.masks.flip(-1) if sample.masks is not None else None,
                          semantic=sample.semantic.flip(-1) if sample.semantic is not None else None,
                          depth=sample.depth.flip(-1) if sample.depth is not None else None)


def crop(sample: Sample, top: int, left: int, height: int, width: int, min_box_size: float = 1.0) -> Sample:
    """Cut the window (top, left, height, width); boxes are shifted, clipped, and dropped when they left it."""
    image = sample.image.crop((left, top, left + width, top + height)) if sample.image is not None else None
    out = sample.replace(image=image, frames=_frames(sample, lambda f: f[:, top:top + height, left:left + width]),
                         masks=sample.masks[:, top:top + height, left:left + width] if sample.masks is not None
                         else None,
                         semantic=sample.semantic[top:top + height, left:left + width]
                         if sample.semantic is not None else None,
                         depth=sample.depth[top:top + height, left:left + width] if sample.depth is not None else None)
    if sample.boxes is None:
        return out
    shifted = sample.boxes - torch.tensor([left, top, left, top], dtype=sample.boxes.dtype)
    limit = torch.tensor([width, height, width, height], dtype=shifted.dtype)
    clipped = torch.minimum(shifted.clamp_min(0), limit)
    keep = ((clipped[:, 2] - clipped[:, 0]) >= min_box_size) & ((clipped[:, 3] - clipped[:, 1]) >= min_box_size)
    return keep_boxes(out.replace(boxes=clipped), keep)


def random_crop_window(width: int, height: int, scale: tuple[float, float], ratio: tuple[float, float],
                       generator: torch.Generator) -> tuple[int, int, int, int]:
    """(top, left, h, w) covering ``scale`` of the area with aspect in ``ratio`` (torchvision's algorithm,
    drawn from ``generator``); falls back to the central square."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * uniform(generator, *scale)
        aspect = math.exp(uniform(generator, *log_ratio))
        w, h = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (), generator=generator))
            left = int(torch.randint(0, width - w + 1, (), generator=generator))
            return top, left, h, w
    side = min(width, height)
    return (height - side) // 2, (width - side) // 2, side, side


@dataclass
class RandomResizedCrop:
    """A random window of ``scale`` of the area, resized to ``size`` x ``size``."""

    size: int
    scale: tuple[float, float] = (0.9, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample:
        top, left, h, w = random_crop_window(*picture_size(sample), self.scale, self.ratio, generator)
        return resize(crop(sample, top, left, h, w), (self.size, self.size))


@dataclass
class RandomHFlip:
    """Mirror with probability ``p``."""

    p: float = 0.5

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample:
        return hflip(sample) if uniform(generator, 0, 1) < self.p else sample


@dataclass
class ScaleJitter:
    """Resize so the image fits ``target`` x ``target`` times a random factor in ``scale`` (aspect kept),
    then crop a random ``target``-sized window when it is larger (the detectors' large-scale jitter)."""

    target: int
    scale: tuple[float, float] = (0.5, 2.0)

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample:
        width, height = picture_size(sample)
        factor = uniform(generator, *self.scale) * self.target / max(width, height)
        size = (max(1, round(height * factor)), max(1, round(width * factor)))
        sample = resize(sample, size)
        h, w = min(size[0], self.target), min(size[1], self.target)
        top = int(torch.randint(0, size[0] - h + 1, (), generator=generator))
        left = int(torch.randint(0, size[1] - w + 1, (), generator=generator))
        return crop(sample, top, left, h, w)


@dataclass
class Compose:
    """Apply geometric ops in order with one generator."""

    ops: Sequence[SampleOp]

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample:
        for op in self.ops:
            sample = op(sample, generator)
        return sample
