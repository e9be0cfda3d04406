"""Turning user images (paths, PIL, tensors) into normalised model input at any resolution."""
from __future__ import annotations

import os
from typing import Sequence, Union

import torch
import torchvision.transforms.functional as TF
from open_clip import get_model_preprocess_cfg
from PIL import Image

from ..data.images import open_image
from ..errors import ConfigError

ImageLike = Union[str, os.PathLike, Image.Image, torch.Tensor]


def as_pil(image: ImageLike) -> Image.Image:
    """Paths are opened robustly; PIL images are converted to RGB."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, (str, os.PathLike)):
        return open_image(image)
    raise ConfigError(f"expected an image path or PIL image, got {type(image).__name__}")


def one_image(image: ImageLike, task: str) -> ImageLike:
    """``image`` unchanged when it is one image: a tensor batch of several is refused, since a task that answers
    for one image would otherwise return image 0's result and silently drop the rest."""
    if isinstance(image, torch.Tensor):
        if image.ndim == 4 and image.shape[0] != 1:
            raise ConfigError(f"{task} takes one image; got a batch of {image.shape[0]} — call it once per image")
        if image.ndim not in (3, 4):
            raise ConfigError(f"{task} takes one image as a (3, H, W) or (1, 3, H, W) tensor; got shape "
                              f"{tuple(image.shape)}")
    return image


def texts_per_image(image: ImageLike | Sequence[ImageLike], text: str | Sequence[str], what: str
                    ) -> tuple[bool, list[ImageLike], list[str]]:
    """(whether a list was given, the images, one text per image): a single text is shared by every image, a list
    must give one per image (``what`` names it in the one-line refusal)."""
    many = isinstance(image, (list, tuple))
    images = list(image) if many else [image]
    texts = [text] * len(images) if isinstance(text, str) else list(text)
    if len(texts) != len(images):
        raise ConfigError(f"{what}: expected one {what} per image ({len(images)}), got {len(texts)}")
    return many, images, texts


def normalisation(model: torch.nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The model's mean and std from open_clip's preprocess config."""
    cfg = get_model_preprocess_cfg(model)
    return tuple(cfg["mean"]), tuple(cfg["std"])


#: the long side of a dense input is at most this many times its short side: a 1 x 2000 strip read at its
#: natural aspect would need a 64 x 128000 input (131 GB of attention); squeezed to 1:8 it costs 8 square images
MAX_ASPECT = 8.0


def bounded_size(width: int, height: int, short_side: int | None) -> tuple[int, int]:
    """(width, height) with the short side at ``short_side`` (None: as is) and the long side at most
    ``MAX_ASPECT`` times the short one (extreme aspect ratios are squeezed; labels map back to the original)."""
    if short_side is not None and short_side < 1:
        raise ConfigError(f"short_side {short_side}: expected a side in pixels >= 1")
    short = short_side if short_side is not None else min(width, height)
    long = min(int(short * max(width, height) / min(width, height)), int(short * MAX_ASPECT))  # as torchvision
    return (short, max(long, 1)) if width <= height else (max(long, 1), short)


def check_dense_settings(short_side: int | None, window: int | None = None,
                         background_threshold: float | None = None) -> None:
    """Sizes are pixels >= 1 and a background threshold is a probability (a 0 or 5 would silently mean 'the
    default' or 'everything is background')."""
    for name, value in (("short_side", short_side), ("window", window)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"{name} {value!r}: expected a size in pixels >= 1 (or None)")
    if background_threshold is not None and not 0.0 <= background_threshold <= 1.0:
        raise ConfigError(f"background_threshold {background_threshold}: expected a probability in [0, 1] (or None)")


def dense_input(model: torch.nn.Module, image: ImageLike, short_side: int | None = None) -> torch.Tensor:
    """(1, 3, H, W) normalised tensor, resized so the short side is ``short_side`` (None: as is).

    Dense inference keeps the aspect ratio (positional embeddings are interpolated instead), up to
    ``MAX_ASPECT``: a long side past it is squeezed, so no input shape can ask for unbounded memory.
    """
    if isinstance(image, torch.Tensor):
        tensor = image if image.ndim == 4 else image[None]
        return tensor
    pil = as_pil(image)
    size = bounded_size(pil.width, pil.height, short_side)
    if size != pil.size:
        pil = TF.resize(pil, [size[1], size[0]], interpolation=TF.InterpolationMode.BICUBIC)
    mean, std = normalisation(model)
    return TF.normalize(TF.to_tensor(pil), mean, std)[None]
