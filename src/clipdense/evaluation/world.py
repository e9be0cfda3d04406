"""Turn an evaluation split (a world, or a real dataset in the same layout) into the tensors the
evaluators take, through the project's readers (`clipdense.data`), so real data is read the same way.

Evaluators never touch files; this module is the only one in `evaluation` that does.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import torch
import torchvision.transforms.functional as TF
from PIL import Image

from ..data import CocoRegions, ImageFolderDataset, SemSegFolder, SkipCounter, open_image, read_classes, \
    read_csv
from ..data.world import is_world, open_world
from ..errors import DataError, ImageLoadError
from .regions import RegionBatch

Preprocess = Callable[[Image.Image], torch.Tensor]


@dataclass
class EvalWorld:
    """Class lists and file locations of one split; class index i = line i of ``classes``."""

    root: Path
    split: str
    classes: list[str]
    things: list[int]
    stuff: list[int]
    paths: dict[str, Path]
    groups: dict[str, list[int]] = field(default_factory=dict)   # base / novel thing classes
    ignore_index: int = 255
    skips: SkipCounter = field(default_factory=SkipCounter)


def open_eval_world(data_dir: str | Path, split: str = "val") -> EvalWorld:
    """A world (``world.json``), or any folder in the WORLD layout with ``semseg/classes.txt``.

    Without world.json there is no thing/stuff split: every class counts as a thing.
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise DataError(f"--data {root}: not a directory (expected a world written by `clipdense data synth`)")
    if is_world(root):
        world = open_world(root)
        s = world.split(split)
        index = {name: i for i, name in enumerate(world.classes)}
        groups = {"base": [index[n] for n in world.base_things], "novel": [index[n] for n in world.novel_things]}
        paths = dict(image_dir=s.image_dir, csv=s.csv, instances=s.instances, stuff=s.stuff,
                     semseg_dir=s.semseg_dir, classify_dir=s.classify_dir)
        return EvalWorld(root, split, world.classes, [index[n] for n in world.things],
                         [index[n] for n in world.stuff], paths, {g: v for g, v in groups.items() if v},
                         world.ignore_index)
    classes = read_classes(root / "semseg" / "classes.txt")
    paths = dict(image_dir=root / split / "images", csv=root / f"{split}.csv",
                 instances=root / "annotations" / f"instances_{split}.json",
                 stuff=root / "annotations" / f"stuff_{split}.json", semseg_dir=root / "semseg" / split,
                 classify_dir=root / "classify" / split)
    return EvalWorld(root, split, classes, list(range(len(classes))), [], paths)


def _resize(image: Image.Image, short_side: int | None) -> Image.Image:
    """Short side to ``short_side`` (bicubic, aspect kept), as dense inference protocols do."""
    if short_side is None or min(image.size) == short_side:
        return image
    return TF.resize(image, short_side, interpolation=TF.InterpolationMode.BICUBIC)


class Batches:
    """A sized, re-iterable stream of batches built from ``items`` only while iterated (flat memory)."""

    def __init__(self, items: Sequence, size: int, make: Callable[[Sequence], Iterable]) -> None:
        self.items, self.size, self.make = items, max(1, size), make

    def __len__(self) -> int:
        return -(-len(self.items) // self.size)

    def __iter__(self) -> Iterator:
        for start in range(0, len(self.items), self.size):
            yield from self.make(self.items[start:start + self.size])


def _safe(world: EvalWorld, load: Callable[[], object]) -> object | None:
    """Run a reader call, counting unreadable images instead of failing the whole evaluation."""
    try:
        return load()
    except ImageLoadError as exc:
        world.skips.add(exc)
        return None


def classification_batches(world: EvalWorld, preprocess: Preprocess, batch_size: int
                           ) -> tuple[Batches, list[str]]:
    """ImageFolder split: batches of (images, labels) and the class names (folder names, sorted)."""
    dataset = ImageFolderDataset(world.paths["classify_dir"], skip_counter=world.skips)

    def make(indices: Sequence[int]) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        samples = [s for s in (_safe(world, lambda i=i: dataset[i]) for i in indices) if s is not None]
        if samples:
            yield (torch.stack([preprocess(s.image) for s in samples]),
                   torch.tensor([s.image_label for s in samples]))
    return Batches(range(len(dataset)), batch_size, make), list(dataset.classes)


def retrieval_batches(world: EvalWorld, preprocess: Preprocess, batch_size: int) -> Batches:
    """open_clip CSV rows grouped by image: batches of (images, every caption of each image)."""
    path = world.paths["csv"]
    if not Path(path).is_file():
        raise DataError(f"{path}: no image-text CSV (expected columns filepath,title)")
    captions: dict[str, list[str]] = {}
    for image, caption in read_csv(Path(path)):
        captions.setdefault(image, []).append(caption)
    items = list(captions.items())

    def make(chunk: Sequence[tuple[str, list[str]]]) -> Iterable[tuple[torch.Tensor, list[list[str]]]]:
        pairs = [(im, caps) for im, caps in ((_safe(world, lambda p=p: open_image(p)), c) for p, c in chunk)
                 if im is not None]
        if pairs:
            yield torch.stack([preprocess(im) for im, _ in pairs]), [caps for _, caps in pairs]
    return Batches(items, batch_size, make)


def segmentation_samples(world: EvalWorld, to_tensor: Preprocess, short_side: int | None
                         ) -> tuple[int, Iterator[tuple[torch.Tensor, torch.Tensor]]]:
    """(count, iterator of (normalised image resized to ``short_side``, label at the original size))."""
    dataset = SemSegFolder(world.paths["image_dir"], world.paths["semseg_dir"], world.classes,
                           ignore_index=world.ignore_index, skip_counter=world.skips)

    def gen() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for sample in dataset:  # iteration skips and counts unreadable images
            yield to_tensor(_resize(sample.image, short_side)), sample.semantic
    return len(dataset), gen()


def region_batches(world: EvalWorld, to_tensor: Preprocess, short_side: int | None, batch_size: int) -> Batches:
    """Batches of same-size images with GT boxes (scaled to the resized image), masks and class indices."""
    stuff = world.paths["stuff"] if Path(world.paths["stuff"]).is_file() else None
    dataset = CocoRegions(world.paths["image_dir"], world.paths["instances"], stuff, with_masks=True,
                          skip_counter=world.skips)
    index = {name: i for i, name in enumerate(world.classes)}
    unknown = sorted(set(dataset.classes) - set(index))
    if unknown:
        raise DataError(f"{world.paths['instances']}: categories {unknown[:5]} are not in the class list")

    def make(indices: Sequence[int]) -> Iterable[RegionBatch]:
        groups: dict[tuple[int, int], RegionBatch] = {}
        for i in indices:
            sample = _safe(world, lambda i=i: dataset[i])
            if sample is None or not len(sample.boxes):
                continue
            tensor = to_tensor(_resize(sample.image, short_side))
            batch = groups.setdefault(tuple(tensor.shape[-2:]), RegionBatch([], [], [], []))
            batch.images.append(tensor)
            batch.boxes.append(sample.boxes * (tensor.shape[-1] / sample.image.width))
            batch.masks.append(sample.masks)
            batch.labels.append(torch.tensor([index[dataset.classes[int(i)]] for i in sample.labels]))
        for b in groups.values():
            yield RegionBatch(torch.stack(b.images), b.boxes, b.masks, b.labels)
    return Batches(range(len(dataset)), batch_size, make)
