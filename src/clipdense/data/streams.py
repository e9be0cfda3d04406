"""Endless, resumable ``Sample`` streams over map-style readers (COCO, semantic folders, ImageFolder, a list).

The order is a pure function of (seed, epoch); rank r of w takes ``order[r::w]``, so sample i of a
rank's stream is sample ``i * w + r`` of the un-sharded one (the engine's per-sample seeds rely on
it). Unreadable images are skipped and counted, never fatal.
"""
from __future__ import annotations

from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from ..errors import DataError, ImageLoadError
from .sample import Sample
from .skips import SkipCounter


class IndexedSource:
    """A map-style reader (``len`` + ``__getitem__`` -> Sample) as an epoch-shuffled, rank-sharded stream.

    Args:
        reader: the dataset; its ``skips`` counter (if any) receives unreadable images.
        seed, rank, world_size: the epoch order and this rank's share of it.
        keep: indices of the reader to use (e.g. only images with boxes, a few-shot subset); default all.
        what: how the data is named in errors.
        shuffle: a new order every epoch (False: the reader's order, e.g. for sharding checks).
    """

    def __init__(self, reader: Any, seed: int = 0, rank: int = 0, world_size: int = 1,
                 keep: Sequence[int] | None = None, what: str = "the data", shuffle: bool = True) -> None:
        self.reader, self.shuffle = reader, shuffle
        self.indices = list(range(len(reader))) if keep is None else list(keep)
        if not self.indices:
            raise DataError(f"{what}: no usable samples")
        self.skips: SkipCounter = getattr(reader, "skips", None) or SkipCounter()
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch, self.index = 0, 0

    @property
    def num_samples(self) -> int:
        return len(self.indices)

    @property
    def skipped(self) -> int:
        return self.skips.count

    @property
    def classes(self) -> list[str] | None:
        """The reader's class names in label order (None when it names none)."""
        return getattr(self.reader, "classes", None)

    def _order(self) -> list[int]:
        order = (np.random.default_rng([self.seed, self.epoch]).permutation(len(self.indices)) if self.shuffle
                 else np.arange(len(self.indices)))
        return [self.indices[i] for i in order[self.rank::self.world_size]]

    def __iter__(self) -> Iterator[Sample]:
        while True:
            order, start, yielded = self._order(), self.index, 0
            while self.index < len(order):
                position = order[self.index]
                self.index += 1
                try:
                    sample = self.reader[position]
                except ImageLoadError as exc:
                    self.skips.add(exc)
                    continue
                yielded += 1
                yield sample
            self.epoch, self.index = self.epoch + 1, 0
            if not yielded and start == 0:   # resumed exactly at an epoch's end is not unreadable data
                raise DataError(f"every image of an epoch was unreadable ({self.skips.summary()})")

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "index": self.index}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.epoch, self.index = int(state["epoch"]), int(state["index"])



class SampleList:
    """Samples already in memory as a map-style reader (``len`` + ``__getitem__``), with optional class names."""

    def __init__(self, samples: Sequence[Sample], classes: Sequence[str] | None = None) -> None:
        self.samples = list(samples)
        self.classes = None if classes is None else list(classes)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Sample:
        return self.samples[index]


class InMemorySamples(IndexedSource):
    """A list of Samples as an endless, epoch-shuffled, rank-sharded, resumable source (tests, small experiments).

    Args:
        samples: the data; ``classes`` names their labels when they carry any.
        seed, rank, world_size, shuffle: as ``IndexedSource``.
    """

    def __init__(self, samples: Sequence[Sample], seed: int = 0, rank: int = 0, world_size: int = 1,
                 shuffle: bool = True, classes: Sequence[str] | None = None) -> None:
        super().__init__(SampleList(samples, classes), seed, rank, world_size, what="the given samples",
                         shuffle=shuffle)
