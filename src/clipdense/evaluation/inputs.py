"""What ``--data`` offers the evaluation: the parsed spec, a world's extras (base / novel classes, its
thing classes), the reader a task needs, and the batching helpers tasks build their inputs with.

Data is read only through the project's readers (``clipdense.data``), so a world and a real dataset
(COCO folder + instances JSON, ADE-style semantic folder, ImageFolder, open_clip CSV, shards) are read
the same way. Evaluators never touch files; this module and the task functions' readers do.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence, TypeVar

import torchvision.transforms.functional as TF
from PIL import Image

from ..data.readers import IMAGE, has_images, open_reader, provided_fields, resolve_reader
from ..data.sample import Sample, describe_fields
from ..data.skips import SkipCounter
from ..data.spec import DataSpec, parse_data
from ..data.world.folder import open_world
from ..errors import DataError, ImageLoadError

T = TypeVar("T")


class NeedsFields(Protocol):
    """What the data side needs of a task: its name and the Sample fields its reader must fill (an
    ``EvalTask``; a protocol so this module does not import the registry, which sits above it)."""

    name: str
    needs: frozenset[str]


@dataclass
class EvalData:
    """One ``--data`` for evaluation.

    Args:
        spec: the parsed ``--data``.
        split: the world split evaluated; None for other data (it is evaluated as given).
        groups: named subsets of class names reported apart (a world's ``base`` / ``novel`` things).
        things: thing class names of semantic maps (a world's); None: the data does not say, every class
            counts as a thing.
        skips: where unreadable images are counted, over every task.
    """

    spec: DataSpec
    split: str | None
    groups: dict[str, list[str]] = field(default_factory=dict)
    things: list[str] | None = None
    skips: SkipCounter = field(default_factory=SkipCounter)

    def problem(self, task: NeedsFields) -> str | None:
        """Why the data cannot feed ``task`` (one line), or None when it can."""
        try:
            resolve_reader(self.spec, task.needs, self.split or "val", who=f"eval task {task.name!r}")
        except DataError as exc:
            return str(exc)
        return None

    def fields(self) -> frozenset[str]:
        """Every Sample field some reader of the data fills."""
        return provided_fields(self.spec)

    def lacks(self, task: NeedsFields) -> str:
        """Short reason the data cannot feed ``task``: 'needs semantic' (the results' ``skipped_tasks``)."""
        if IMAGE in task.needs and not has_images(self.spec):
            return "needs images"
        needs = task.needs - {IMAGE}
        missing = needs - self.fields()
        return f"needs {describe_fields(missing)}" if missing else f"needs {describe_fields(needs)} from one reader"

    def open(self, task: NeedsFields) -> Any:
        """The reader that fills ``task.needs`` (streams in file order, one rank)."""
        reader, _ = open_reader(self.spec, task.needs, self.split or "val", skip_counter=self.skips,
                                who=f"eval task {task.name!r}", shuffle=False, rank=0, world_size=1)
        return reader

    def group_indices(self, classes: Sequence[str]) -> dict[str, list[int]]:
        """``groups`` as indices into ``classes`` (names not in ``classes`` dropped, empty groups left out)."""
        index = {name: i for i, name in enumerate(classes)}
        out = {g: [index[n] for n in names if n in index] for g, names in self.groups.items()}
        return {g: v for g, v in out.items() if v}


def open_eval_data(data: str | os.PathLike | DataSpec, split: str = "val") -> EvalData:
    """Parse ``--data``; a world's split is checked here, and its base / novel and thing classes kept."""
    spec = parse_data(data)
    if spec.format != "world":
        return EvalData(spec, None)
    world = open_world(spec.get("root"))
    world.split(split)   # DataError naming the available splits
    groups = {"base": world.base_things, "novel": world.novel_things}
    return EvalData(spec, split, {g: v for g, v in groups.items() if v}, world.things)


def resize_short_side(image: Image.Image, short_side: int | None) -> Image.Image:
    """Short side to ``short_side`` (bicubic, aspect kept), as dense inference protocols do."""
    if short_side is None or min(image.size) == short_side:
        return image
    return TF.resize(image, short_side, interpolation=TF.InterpolationMode.BICUBIC)


def load_or_skip(skips: SkipCounter, load: Callable[[], T]) -> T | None:
    """Run a reader call, counting an unreadable image instead of failing the whole evaluation."""
    try:
        return load()
    except ImageLoadError as exc:
        skips.add(exc)
        return None


class Batches:
    """A sized, re-iterable stream of batches built from ``items`` only while iterated (flat memory)."""

    def __init__(self, items: Sequence, size: int, make: Callable[[Sequence], Iterable]) -> None:
        self.items, self.size, self.make = items, max(1, size), make

    def __len__(self) -> int:
        return -(-len(self.items) // self.size)

    def __iter__(self) -> Iterator:
        for start in range(0, len(self.items), self.size):
            yield from self.make(self.items[start:start + self.size])


def sample_batches(reader: Any, batch_size: int, skips: SkipCounter,
                   collate: Callable[[list[Sample]], Iterable[T]]) -> Batches:
    """Batches of a map-style reader: ``collate`` turns each run of readable samples into batches."""
    def make(indices: Sequence[int]) -> Iterable[T]:
        samples = [s for s in (load_or_skip(skips, lambda i=i: reader[i]) for i in indices) if s is not None]
        return collate(samples) if samples else ()
    return Batches(range(len(reader)), batch_size, make)
