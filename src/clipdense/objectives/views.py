"""Augmented views drawn from an explicit generator (so a sample's crops depend only on its seed).

torchvision's random transforms read the global RNG; these take ``generator`` instead and call
torchvision's functional ops for the pixels.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torchvision.transforms import InterpolationMode

from ..data.sample import Sample
from ..data.transforms import random_crop_window, uniform

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class ImageView:
    """One random-resized crop to ``size`` pixels, optional flip / colour distortion, then normalisation.

    Args:
        size: output side in pixels.
        scale: crop area as a fraction of the image (min, max).
        ratio: crop aspect range.
        flip: horizontal flip with p=0.5 (off for captions that say "left"/"right").
        color_jitter: SimCLR colour distortion strength (0 = off): brightness/contrast/saturation
            by +-0.4s, hue by +-0.1s, applied with p=0.8, then grayscale with p=0.2 (Chen et al. 2020, App. A).
    """

    size: int
    scale: tuple[float, float] = (0.9, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = False
    color_jitter: float = 0.0
    mean: Sequence[float] = OPENAI_MEAN
    std: Sequence[float] = OPENAI_STD

    def __call__(self, image: Image.Image, generator: torch.Generator) -> torch.Tensor:
        top, left, h, w = random_crop_window(image.width, image.height, self.scale, self.ratio, generator)
        image = TF.resized_crop(image, top, left, h, w, [self.size, self.size],
                                interpolation=InterpolationMode.BICUBIC)
        if self.flip and uniform(generator, 0, 1) < 0.5:
            image = TF.hflip(image)
        if self.color_jitter > 0:
            image = self._distort(image, generator)
        tensor = TF.to_tensor(image)
        return TF.normalize(tensor, list(self.mean), list(self.std))

    def _distort(self, image: Image.Image, generator: torch.Generator) -> Image.Image:
        s = self.color_jitter
        if uniform(generator, 0, 1) < 0.8:
            image = TF.adjust_brightness(image, uniform(generator, max(0.0, 1 - 0.4 * s), 1 + 0.4 * s))
            image = TF.adjust_contrast(image, uniform(generator, max(0.0, 1 - 0.4 * s), 1 + 0.4 * s))
            image = TF.adjust_saturation(image, uniform(generator, max(0.0, 1 - 0.4 * s), 1 + 0.4 * s))
            image = TF.adjust_hue(image, uniform(generator, -0.1 * s, 0.1 * s))
        if uniform(generator, 0, 1) < 0.2:
            image = TF.to_grayscale(image, num_output_channels=3)
        return image


@dataclass
class Tokenize:
    """Caption -> (context_length,) token ids with the model's own tokenizer."""

    tokenizer: Callable[..., torch.Tensor]

    def __call__(self, text: str) -> torch.Tensor:
        return self.tokenizer([text])[0]


def model_image_stats(model: Any) -> tuple[int, Sequence[float], Sequence[float]]:
    """(image size, mean, std) the model was trained with (open_clip preprocess config)."""
    import open_clip
    cfg = open_clip.get_model_preprocess_cfg(model)
    size = cfg.get("size", getattr(model.visual, "image_size", 224))
    size = size[0] if isinstance(size, (tuple, list)) else size
    return int(size), tuple(cfg.get("mean", OPENAI_MEAN)), tuple(cfg.get("std", OPENAI_STD))


@dataclass
class ImageTextTransform:
    """The clip/siglip sample: one view of the image and its tokenised caption."""

    view: ImageView
    tokenize: Tokenize

    def __call__(self, sample: Sample, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return {"image": self.view(sample.image, generator), "text": self.tokenize(sample.caption)}
