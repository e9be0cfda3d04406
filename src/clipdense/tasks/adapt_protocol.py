"""The few-shot protocol: N-way K-shot sampling, base-to-novel splits, frozen features, accuracy.

Sampling is seeded per call (never the global RNG) so a (folder, K, seed) triple always names
the same images: results are comparable across methods and reruns, as in CoOp's protocol.
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F

from ...data.formats.folders import IMAGE_SUFFIXES
from ...data.images import open_image
from ...errors import ConfigError, DataError


@dataclass
class LabelledImages:
    """Image paths with integer labels into ``classes``."""

    paths: list[Path]
    labels: list[int]
    classes: list[str]

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, indices: Sequence[int]) -> "LabelledImages":
        return LabelledImages([self.paths[i] for i in indices], [self.labels[i] for i in indices], self.classes)


def read_image_folder(root: str | os.PathLike) -> LabelledImages:
    """root/<class>/<image>; a class folder without images is an error (it could never be learned)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such ImageFolder root (expected root/<class name>/<image>)")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not classes:
        raise DataError(f"{root}: no class folders (expected root/<class name>/<image>)")
    paths, labels = [], []
    for index, name in enumerate(classes):
        files = sorted(p for p in (root / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"{root / name}: class folder holds no images with suffix {IMAGE_SUFFIXES}")
        paths.extend(files)
        labels.extend([index] * len(files))
    return LabelledImages(paths, labels, classes)


def restrict_classes(data: LabelledImages, classes: Sequence[str]) -> LabelledImages:
    """Keep only ``classes`` (in that order) and relabel them 0..len(classes)-1."""
    missing = [c for c in classes if c not in data.classes]
    if missing:
        raise DataError(f"classes {missing[:3]} are not among the folder's classes")
    new_index = {data.classes.index(c): i for i, c in enumerate(classes)}
    keep = [i for i, label in enumerate(data.labels) if label in new_index]
    return LabelledImages([data.paths[i] for i in keep], [new_index[data.labels[i]] for i in keep], list(classes))


def sample_few_shot(data: LabelledImages, shots: int, seed: int,
                    exclude: Sequence[Path] = ()) -> LabelledImages:
    """K images per class drawn with ``random.Random(seed)``, skipping ``exclude`` (e.g. the train shots)."""
    if shots < 1:
        raise ConfigError(f"--shots must be >= 1, got {shots}")
    rng, skip = random.Random(seed), set(exclude)
    chosen: list[int] = []
    for label, name in enumerate(data.classes):
        pool = [i for i, lab in enumerate(data.labels) if lab == label and data.paths[i] not in skip]
        if len(pool) < shots:
            raise DataError(f"class '{name}' has {len(pool)} usable images, fewer than --shots {shots}")
        chosen.extend(sorted(rng.sample(pool, shots)))
    return data.subset(chosen)


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


def load_pixels(preprocess: Callable, paths: Sequence[Path]) -> torch.Tensor:
    """(N, 3, H, W) model inputs for ``paths``."""
    if not paths:
        raise DataError("no images to load")
    return torch.stack([preprocess(open_image(p)) for p in paths])


def batched(encode: Callable[[torch.Tensor], torch.Tensor], pixels: torch.Tensor,
            batch_size: int = 64) -> torch.Tensor:
    """Apply ``encode`` to ``pixels`` in chunks and concatenate (inference only, no grad)."""
    with torch.no_grad():
        return torch.cat([encode(pixels[i:i + batch_size]) for i in range(0, len(pixels), batch_size)])


def frozen_features(model: torch.nn.Module, pixels: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """(N, D) unit-norm image embeddings of the frozen model."""
    device = next(model.parameters()).device
    return batched(lambda x: F.normalize(model.encode_image(x.to(device)).float(), dim=-1), pixels, batch_size)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in percent."""
    return float((logits.argmax(-1).cpu() == labels.cpu()).float().mean() * 100)


class ShuffledBatches:
    """Endless seeded epochs of (inputs, labels) minibatches; resumable by (epoch, index).

    The engine consumes any iterator of batches; this one is the in-memory few-shot set.
    """

    def __init__(self, inputs: torch.Tensor, labels: torch.Tensor, batch_size: int, seed: int = 0,
                 key: str = "features") -> None:
        if len(inputs) != len(labels) or len(inputs) == 0:
            raise DataError(f"few-shot batches need as many inputs as labels (> 0), got {len(inputs)}/{len(labels)}")
        self.inputs, self.labels, self.key = inputs, labels, key
        self.batch_size, self.seed = min(batch_size, len(inputs)), seed
        self.epoch, self.index = 0, 0

    def _order(self) -> torch.Tensor:
        return torch.randperm(len(self.inputs), generator=torch.Generator().manual_seed(self.seed * 7919 + self.epoch))

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        while True:
            order = self._order()
            if self.index + self.batch_size > len(order):
                self.epoch, self.index = self.epoch + 1, 0
                continue
            take = order[self.index:self.index + self.batch_size]
            self.index += self.batch_size
            yield {self.key: self.inputs[take], "label": self.labels[take]}

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "index": self.index}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.index = int(state["epoch"]), int(state["index"])
