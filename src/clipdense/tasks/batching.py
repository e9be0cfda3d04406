"""Many images in, one result per image out: what a ``*_batch`` entry point accepts (a list, a tensor batch, a
folder), per-image class lists, and the grouping that runs images of one input size as one forward.

Why group by exact size and never pad: a padded image sees other pixels through attention (and a detector's
transform), so its result would depend on its batch-mates. Images of one size batch with no change at all, so
``segment_batch([a, b])`` equals ``[segment(a), segment(b)]``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Hashable, Sequence, Union

import torch
from PIL import Image

from ..data.media import IMAGE_SUFFIXES
from ..errors import ConfigError
from .images import ImageLike

#: what the batch entry points take: a list of images, a (B, 3, H, W) tensor, or a folder of images
ImagesLike = Union[torch.Tensor, Sequence[ImageLike], str, os.PathLike]
#: one class list for every image, or one list per image
ClassesLike = Union[Sequence[str], Sequence[Sequence[str]]]
#: images one forward takes at most (the batch entry points' default)
DEFAULT_BATCH = 8


def list_images(root: str | os.PathLike, pattern: str | None = None, recursive: bool = False) -> list[Path]:
    """Image files under ``root``, sorted by relative path. Without ``pattern`` only known image suffixes are taken
    (a README beside the pictures is not an unreadable image); with one, every file it matches is (the user asked)."""
    folder = Path(root)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: " + ("is a file, expected a folder" if folder.exists() else "no such folder"))
    found = folder.rglob(pattern or "*") if recursive else folder.glob(pattern or "*")
    files = [p for p in found if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)]
    if pattern is None:
        files = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    return sorted(files, key=lambda p: p.relative_to(folder).as_posix())


def image_list(images: ImagesLike, task: str) -> list[ImageLike]:
    """The images of a batch entry point's input, in order: a tensor batch is split into its images, a folder is
    listed (``list_images``), one image is a list of one."""
    if isinstance(images, torch.Tensor):
        if images.ndim == 3:
            return [images]
        if images.ndim != 4 or images.shape[1] != 3:
            raise ConfigError(f"{task}: expected a (B, 3, H, W) or (3, H, W) tensor, got shape {tuple(images.shape)}")
        return list(images.unbind(0))
    if isinstance(images, (str, os.PathLike)):
        return list(list_images(images)) if Path(images).is_dir() else [images]
    if isinstance(images, Image.Image):
        return [images]
    if not isinstance(images, Sequence):
        raise ConfigError(f"{task}: expected images (a list, a (B, 3, H, W) tensor or a folder), got "
                          f"{type(images).__name__}")
    return list(images)


def class_lists(classes: ClassesLike, count: int, task: str) -> list[tuple[str, ...]]:
    """One class tuple per image: ``classes`` shared by all (a list of names) or given per image (a list of lists,
    one per image)."""
    if isinstance(classes, str) or not isinstance(classes, Sequence) or len(classes) == 0:
        raise ConfigError(f"{task}: classes must be a non-empty list of names, or one such list per image")
    if all(isinstance(name, str) for name in classes):
        return [tuple(classes)] * count   # type: ignore[arg-type]
    if any(isinstance(item, str) or not isinstance(item, Sequence) for item in classes):
        raise ConfigError(f"{task}: classes mixes names and lists; give one list of names, or one list per image")
    if len(classes) != count:
        raise ConfigError(f"{task}: {len(classes)} class lists for {count} images (one list per image)")
    for index, names in enumerate(classes):
        if not names or not all(isinstance(name, str) for name in names):
            raise ConfigError(f"{task}: the class list of image {index} must be a non-empty list of names")
    return [tuple(names) for names in classes]   # type: ignore[arg-type]


def size_groups(keys: Sequence[Hashable], batch_size: int) -> list[list[int]]:
    """Indices grouped by ``keys`` (an input size, a class list), at most ``batch_size`` per group, groups in the
    order their first image comes."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size {batch_size!r}: expected a count >= 1")
    by_key: dict[Hashable, list[int]] = {}
    for index, key in enumerate(keys):
        by_key.setdefault(key, []).append(index)
    return [indices[start:start + batch_size] for indices in by_key.values()
            for start in range(0, len(indices), batch_size)]
