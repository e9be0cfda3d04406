"""Training data from disk (clipdense.data readers, chosen by the fields the objective needs) and
periodic evaluation on a world's val split."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..data import ImageTextDataset
from ..data.readers import open_reader
from ..data.sample import Sample
from ..data.skips import SkipCounter
from ..data.streams import IndexedSource
from ..data.world.folder import is_world
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


def open_training_source(config: TrainConfig, rank: int, world_size: int, needs: Iterable[str] = (),
                         who: str = "training") -> StreamingSource | IndexedSource:
    """This rank's Sample stream from ``--data``: the reader that fills ``needs`` (DataError if none does).

    Image-text data streams through DataLoader workers; annotated formats (COCO, semantic folders,
    ImageFolder) are read by index. With ``boxes`` needed, images without a box are passed over.
    """
    if not config.data:
        raise DataError("--data is required: a world folder, an open_clip CSV, shards, or format:key=value")
    needs = frozenset(needs)
    reader, kind = open_reader(config.data, needs, "train", who=who, shuffle=True, seed=config.seed, rank=rank,
                               world_size=world_size, chunk_size=1)
    if kind.streaming:
        return StreamingSource(reader, num_workers=config.num_workers)
    has_boxes = getattr(reader, "has_boxes", None)
    keep = [i for i in range(len(reader)) if has_boxes(i)] if "boxes" in needs and has_boxes else None
    return IndexedSource(reader, config.seed, rank, world_size, keep,
                         what=f"--data {config.data}" + (" (no image has a box)" if keep is not None else ""))


def _numbers(tree: Any, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a nested result dict as 'a/b/c' keys."""
    out: dict[str, float] = {}
    if isinstance(tree, Mapping):
        for key, value in tree.items():
            out.update(_numbers(value, f"{prefix}/{key}" if prefix else str(key)))
    elif isinstance(tree, (int, float)) and not isinstance(tree, bool):
        out[prefix] = float(tree)
    return out


def world_evaluator(config: TrainConfig, model_name: str, tokenizer: Any, preprocess: Any,
                    device: torch.device) -> Any:
    """Zero-shot + retrieval on the val split of a world, or None when there is no val world."""
    val = config.val_data or config.data
    if not val or not is_world(Path(val)):
        return None
    from ..evaluation import evaluate
    from ..models import Bundle

    def run(model: nn.Module, step: int) -> dict[str, float]:
        size = model.visual.image_size
        bundle = Bundle(model, tokenizer, preprocess, model_name, None, tuple(size) if isinstance(
            size, (tuple, list)) else (size, size))
        results = evaluate(bundle, val, tasks=("zeroshot", "retrieval"), device=device)
        return _numbers(results["tasks"])
    return run
