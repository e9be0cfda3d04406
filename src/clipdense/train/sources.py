"""Training data from disk: clipdense.data readers, chosen by the fields the objective needs."""
from __future__ import annotations

from typing import Any, Iterable, Iterator, Mapping

from torch.utils.data import DataLoader

from ..data import ImageTextDataset
from ..data.readers import DataInfo, open_data
from ..data.sample import Sample
from ..data.skips import SkipCounter
from ..data.spec import DataSpec
from ..data.streams import IndexedSource
from ..errors import DataError
from .config import TrainConfig


def _identity(sample: dict[str, Any]) -> dict[str, Any]:
    """Keep samples as they are (PIL images pass through worker IPC)."""
    return sample


class StreamingSource:
    """Endless Sample (image, key, caption) stream over epochs of an ``ImageTextDataset``, decoded in worker processes.

    Workers only decode (no randomness); augmentation happens in the engine's BatchStream with
    per-sample seeds. With one sample per fetch and chunk_size 1 the DataLoader's round-robin
    returns the rank's stream in order, so ``position`` is exact for any worker count.
    """

    def __init__(self, dataset: ImageTextDataset, num_workers: int = 0) -> None:
        self.dataset, self.num_workers = dataset, num_workers
        self.skipped = 0
        self._start, self._consumed = dataset.position, 0

    @property
    def skips(self) -> SkipCounter:
        """The reader's counter; its log names the files the decode workers skip."""
        return self.dataset.skips

    @property
    def num_samples(self) -> int | None:
        """Samples per epoch over all ranks (None for tar shards, whose size is unknown up front)."""
        per_rank = self.dataset.num_samples
        return None if per_rank is None else per_rank * self.dataset.world_size

    def __iter__(self) -> Iterator[Sample]:
        while True:
            self._start, self._consumed = self.dataset.position, 0
            loader = DataLoader(self.dataset, batch_size=None, num_workers=self.num_workers,
                                collate_fn=_identity)
            yielded = 0
            for sample in loader:
                self.skipped += int(sample["skipped"])
                self._consumed += 1 + int(sample["skipped"])
                yielded += 1
                yield Sample(sample["image"], str(sample["key"]), caption=sample["caption"])
            if yielded == 0 and self._start == 0:   # resumed exactly at an epoch's end is not empty data
                raise DataError(f"{self.dataset.files}: no readable image-text samples "
                                f"({self.skipped + self.dataset.skips.count} skipped)")
            self.dataset.set_epoch(self.dataset.epoch + 1)

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.dataset.epoch, "position": self._start + self._consumed, "skipped": self.skipped}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.dataset.load_state_dict({"epoch": int(state["epoch"]), "position": int(state["position"])})
        self.skipped = int(state.get("skipped", 0))
        self._start, self._consumed = self.dataset.position, 0


def open_training_source(config: TrainConfig, spec: DataSpec, rank: int, world_size: int,
                         needs: Iterable[str] = (), who: str = "training") -> tuple[StreamingSource | IndexedSource,
                                                                                     DataInfo]:
    """This rank's Sample stream from the parsed ``--data``: the reader that fills ``needs`` (DataError if none
    does), and what the data says of itself. Opened once per run.

    Image-text data streams through DataLoader workers; annotated formats (COCO, semantic folders,
    ImageFolder) are read by index. With ``boxes`` needed, images without a box are passed over.
    """
    needs = frozenset(needs)
    reader, kind, info = open_data(spec, needs, "train", who=who, shuffle=True, seed=config.seed, rank=rank,
                                   world_size=world_size, chunk_size=1)
    if kind.streaming:
        return StreamingSource(reader, num_workers=config.num_workers), info
    has_boxes = getattr(reader, "has_boxes", None)
    keep = [i for i in range(len(reader)) if has_boxes(i)] if "boxes" in needs and has_boxes else None
    return IndexedSource(reader, config.seed, rank, world_size, keep,
                         what=f"--data {config.data}" + (" (no image has a box)" if keep is not None else "")), info


def source_info(source: Any) -> DataInfo:
    """What an in-memory source says of itself: the ``classes`` / ``isthing`` of it or of its ``reader``."""
    holder = source if getattr(source, "classes", None) is not None else getattr(source, "reader", source)
    classes, isthing = getattr(holder, "classes", None), getattr(holder, "isthing", None)
    return DataInfo(None, None if classes is None else tuple(str(c) for c in classes),
                    None if isthing is None else tuple(bool(t) for t in isthing))
