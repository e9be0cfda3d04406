"""What CLIP guidance needs from any clipdense CLIP: its input normalisation, prompt embeddings, seeded
differentiable augmentations of a rendered picture, and the CLIP score.

The augmentations are CLIPDraw's (and CLIPasso's): a random perspective warp (distortion 0.5, filled with the
background) then a random resized crop, drawn per step from a ``torch.Generator`` so a run is repeatable. Both
are grid resampling, so gradients flow back to the picture.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from torchvision.transforms import InterpolationMode

from ..errors import ConfigError
from ..models import Bundle
from ..objectives.views import model_image_stats


@dataclass(frozen=True)
class Augmentations:
    """CLIPDraw's per-step views: ``count`` perspective warps + resized crops of the picture."""

    count: int = 4
    distortion: float = 0.5
    crop_scale: tuple[float, float] = (0.7, 0.9)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ConfigError(f"augmentations: expected a count >= 0, got {self.count}")
        if not 0.0 <= self.distortion < 1.0:
            raise ConfigError(f"augmentation distortion: expected a value in [0, 1), got {self.distortion}")
        low, high = self.crop_scale
        if not 0.0 < low <= high <= 1.0:
            raise ConfigError(f"augmentation crop scale: expected 0 < low <= high <= 1, got {self.crop_scale}")


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def _perspective(image: torch.Tensor, distortion: float, fill: list[float], generator: torch.Generator
                 ) -> torch.Tensor:
    """torchvision's RandomPerspective (p = 1) with its corner offsets drawn from ``generator``."""
    height, width = image.shape[-2:]
    dx, dy = int(distortion * width / 2), int(distortion * height / 2)
    pick = lambda bound: int(torch.randint(0, bound + 1, (), generator=generator))   # noqa: E731
    start = [[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]]
    end = [[pick(dx), pick(dy)], [width - 1 - pick(dx), pick(dy)],
           [width - 1 - pick(dx), height - 1 - pick(dy)], [pick(dx), height - 1 - pick(dy)]]
    return TF.perspective(image, start, end, InterpolationMode.BILINEAR, fill=fill)


def _crop_box(height: int, width: int, aug: Augmentations, generator: torch.Generator) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop box (top, left, h, w), drawn from ``generator`` (10 tries, then whole)."""
    area = height * width
    log_ratio = torch.log(torch.tensor(aug.crop_ratio))
    for _ in range(10):
        target = area * _uniform(generator, *aug.crop_scale)
        ratio = float(torch.exp(torch.tensor(_uniform(generator, float(log_ratio[0]), float(log_ratio[1])))))
        w, h = round((target * ratio) ** 0.5), round((target / ratio) ** 0.5)
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (), generator=generator))
            left = int(torch.randint(0, width - w + 1, (), generator=generator))
            return top, left, h, w
    return 0, 0, height, width


def augment(pictures: torch.Tensor, size: tuple[int, int], aug: Augmentations, generator: torch.Generator,
            fill: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> torch.Tensor:
    """(B * count, 3, *size) views of (B, 3, H, W) pictures in [0, 1]: for each of ``count`` draws one warp and
    one crop shared by the batch (CLIPasso warps photo and sketch alike); count 0 = the pictures resized."""
    if aug.count == 0:
        return resize(pictures, size)
    views = []
    for _ in range(aug.count):
        warped = _perspective(pictures, aug.distortion, list(fill), generator) if aug.distortion > 0 else pictures
        top, left, h, w = _crop_box(*pictures.shape[-2:], aug, generator)
        views.append(resize(warped[..., top:top + h, left:left + w], size))
    return torch.cat(views)


def resize(pictures: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize with antialiasing (a 128 px drawing read by a 64 px CLIP keeps its thin strokes)."""
    if tuple(pictures.shape[-2:]) == tuple(size):
        return pictures
    return F.interpolate(pictures, size=size, mode="bilinear", align_corners=False, antialias=True)


class ClipGuide:
    """A CLIP as a differentiable judge of pictures in [0, 1]: unit image embeddings and prompt embeddings."""

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle
        self.model = bundle.model
        _, mean, std = model_image_stats(bundle.model)
        device = bundle.device
        self.mean = torch.tensor(mean, device=device)[None, :, None, None]
        self.std = torch.tensor(std, device=device)[None, :, None, None]
        self.size = tuple(bundle.image_size)

    def normalise(self, pictures: torch.Tensor) -> torch.Tensor:
        return (pictures - self.mean) / self.std

    def embed_images(self, pictures: torch.Tensor) -> torch.Tensor:
        """(B, D) unit embeddings of pictures already at the CLIP's input size."""
        return F.normalize(self.model.encode_image(self.normalise(pictures)), dim=-1)

    @torch.no_grad()
    def embed_prompts(self, prompts: list[str] | tuple[str, ...]) -> torch.Tensor:
        """(P, D) unit text embeddings (each prompt as written, no template)."""
        for prompt in prompts:
            if not prompt.strip():
                raise ConfigError("prompt: expected some words, got an empty prompt")
        tokens = self.bundle.tokenizer(list(prompts)).to(self.bundle.device)
        return F.normalize(self.model.encode_text(tokens), dim=-1)

    @torch.no_grad()
    def score(self, pictures: torch.Tensor, prompts: list[str] | tuple[str, ...]) -> torch.Tensor:
        """(B, P) cosine between each picture (any size, resized whole) and each prompt: the CLIP score."""
        images = self.embed_images(resize(pictures.to(self.mean.device), self.size))
        return images @ self.embed_prompts(prompts).T
