"""The few-shot protocol: N-way K-shot sampling, base-to-novel splits, the shots as a training source, accuracy.

The data is the ImageFolder reader (``clipdense.data``); a set of shots is a list of its indices, and training reads
them as an ``IndexedSource`` restricted to those indices. Sampling is seeded per call (never the global RNG) so a
(folder, K, seed) triple always names the same images: results are comparable across methods and reruns, as in
CoOp's protocol.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..data.formats.folders import IMAGE_SUFFIXES, ImageFolderDataset
from ..data.streams import IndexedSource
from ..errors import ConfigError, DataError
from ..heads.adapters.base import accuracy

__all__ = ["accuracy", "base_novel_split", "class_indices", "encode_images", "harmonic_mean", "labels_of",
           "open_image_folder", "sample_few_shot", "shots_source"]


def open_image_folder(root: str | os.PathLike | ImageFolderDataset) -> ImageFolderDataset:
    """root/<class>/<image>; a class folder without images is an error (it could never be learned)."""
    if isinstance(root, ImageFolderDataset):
        return root
    reader = ImageFolderDataset(root)
    counts = {name: 0 for name in reader.classes}
    for _, label in reader.samples:
        counts[reader.classes[label]] += 1
    empty = [name for name, count in counts.items() if count == 0]
    if empty:
        raise DataError(f"{Path(root) / empty[0]}: class folder holds no images with suffix {IMAGE_SUFFIXES}")
    return reader


def labels_of(reader: ImageFolderDataset) -> list[int]:
    """The label of every image of the reader, in its order."""
    return [label for _, label in reader.samples]


def class_indices(reader: ImageFolderDataset, classes: Sequence[str]) -> list[int]:
    """Indices of the images whose class is among ``classes`` (unknown names are a one-line error)."""
    missing = [c for c in classes if c not in reader.classes]
    if missing:
        raise DataError(f"classes {missing[:3]} are not among {reader.root}'s classes")
    wanted = {reader.classes.index(c) for c in classes}
    return [i for i, label in enumerate(labels_of(reader)) if label in wanted]


def sample_few_shot(reader: ImageFolderDataset, shots: int, seed: int, exclude: Sequence[int] = (),
                    classes: Sequence[str] | None = None) -> list[int]:
    """K image indices per class of ``classes`` (default all, in that order), drawn with ``random.Random(seed)``,
    skipping ``exclude`` (e.g. the training shots)."""
    if shots < 1:
        raise ConfigError(f"--shots must be >= 1, got {shots}")
    rng, skip, labels = random.Random(seed), set(exclude), labels_of(reader)
    chosen: list[int] = []
    for name in classes if classes is not None else reader.classes:
        label = reader.classes.index(name)
        pool = [i for i, lab in enumerate(labels) if lab == label and i not in skip]
        if len(pool) < shots:
            raise DataError(f"class '{name}' has {len(pool)} usable images, fewer than --shots {shots}")
        chosen.extend(sorted(rng.sample(pool, shots)))
    return chosen


def shots_source(reader: ImageFolderDataset, indices: Sequence[int], seed: int) -> IndexedSource:
    """The shots as the engine's training source: epoch-shuffled by ``seed``, resumable."""
    return IndexedSource(reader, seed, keep=list(indices), what=f"the shots of {reader.root}")


def base_novel_split(classes: Sequence[str], novel: Sequence[str] | None = None) -> tuple[list[str], list[str]]:
    """(base, novel): the given novel classes, else the second half of the class list (CoCoOp's protocol)."""
    if novel is None:
        half = (len(classes) + 1) // 2
        return list(classes[:half]), list(classes[half:])
    unknown = [c for c in novel if c not in classes]
    if unknown:
        raise ConfigError(f"novel classes {unknown[:3]} are not among the classes")
    base = [c for c in classes if c not in set(novel)]
    if not base or not novel:
        raise ConfigError("base-to-novel needs at least one base and one novel class")
    return base, [c for c in classes if c in set(novel)]


def harmonic_mean(base: float, novel: float) -> float:
    """HM of base and novel accuracy, the single number CoCoOp/MaPLe rank methods by."""
    return 0.0 if base + novel == 0 else 2 * base * novel / (base + novel)


@torch.no_grad()
def encode_images(encode: Callable[[torch.Tensor], torch.Tensor], preprocess: Callable, reader: ImageFolderDataset,
                  indices: Sequence[int], batch_size: int = 64) -> torch.Tensor:
    """(N, D) ``encode`` of the preprocessed images at ``indices``, in chunks (inference only)."""
    if not indices:
        raise DataError(f"{reader.root}: no images to encode")
    chunks = []
    for start in range(0, len(indices), batch_size):
        pixels = torch.stack([preprocess(reader[i].image) for i in indices[start:start + batch_size]])
        chunks.append(encode(pixels))
    return torch.cat(chunks)
