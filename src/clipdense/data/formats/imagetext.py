"""Streaming image-text pairs from a world folder, an open_clip CSV, or WebDataset tar shards.

Order is a pure function of (seed, epoch, rank, world_size): every rank gets a disjoint part, and
DataLoader workers take round-robin chunks of ``chunk_size`` samples of their rank's stream, so
with ``chunk_size`` = batch size the batches come out in the same order for any number of
workers. That is what makes resuming exact: ``position`` counts samples of the rank's stream.
"""
from __future__ import annotations

import csv
import glob
import os
import tarfile
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from ...errors import DataError, ImageLoadError
from ..images import decode_image, open_image
from ..skips import SkipCounter
from ..world.folder import is_world, open_world

IMAGE_EXTENSIONS = ("png", "jpg", "jpeg", "webp", "bmp")
FORMATS = ("auto", "csv", "wds")


def expand_shards(pattern: str) -> list[str]:
    """Brace (``train-{000000..000003}.tar``) and glob patterns -> sorted existing shard files."""
    from braceexpand import braceexpand
    found: list[str] = []
    for part in braceexpand(pattern):
        found.extend(sorted(glob.glob(part)) if any(c in part for c in "*?[") else [part])
    existing = [p for p in found if os.path.isfile(p)]
    if not existing:
        raise DataError(f"{pattern}: no shards matched (expected .tar files, brace or glob pattern)")
    return existing


def read_csv(path: Path, img_key: str = "filepath", caption_key: str = "title",
             separator: str | None = None) -> list[tuple[str, str]]:
    """(absolute image path, caption) rows of an open_clip CSV/TSV; paths relative to the CSV's folder."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read CSV ({exc})") from exc
    header = text.split("\n", 1)[0]
    sep = separator or ("\t" if "\t" in header else ",")
    reader = csv.DictReader(text.splitlines(), delimiter=sep)
    columns = reader.fieldnames or []
    if img_key not in columns or caption_key not in columns:
        raise DataError(f"{path}: expected columns '{img_key}' and '{caption_key}', found {columns}")
    rows = []
    for row in reader:
        image = row[img_key] or ""
        rows.append((image if os.path.isabs(image) else str(path.parent / image), row[caption_key] or ""))
    return rows


def _resolve(source: str | os.PathLike, split: str, fmt: str) -> tuple[str, Any]:
    """Which format and files a source means: ('csv', Path) or ('wds', [shard paths])."""
    if fmt not in FORMATS:
        raise DataError(f"format={fmt!r}: expected one of {FORMATS}")
    text = str(source)
    if any(c in text for c in "{*?["):
        return "wds", expand_shards(text)
    path = Path(text)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder (expected a world folder, a CSV or tar shards)")
    if path.is_file():
        if path.suffix == ".tar":
            return "wds", [str(path)]
        return "csv", path
    if is_world(path):
        info = open_world(path).split(split)
        if fmt == "wds":
            if not info.shards:
                raise DataError(f"{path}: split {split!r} has no shards")
            return "wds", expand_shards(info.shards)
        return "csv", info.csv
    tars = sorted(str(p) for p in path.glob("*.tar"))
    csvs = sorted(path.glob("*.csv")) + sorted(path.glob("*.tsv"))
    if tars and fmt != "csv":
        return "wds", tars
    if csvs:
        return "csv", csvs[0]
    raise DataError(f"{path}: empty folder (expected world.json, *.tar shards or a .csv file)")


def _tar_samples(path: str, skips: SkipCounter) -> Iterator[dict[str, bytes]]:
    """Group consecutive tar members by key (WebDataset convention); a broken tar is skipped and counted."""
    current: dict[str, Any] = {}
    try:
        with tarfile.open(path, "r|*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                folder, base = os.path.split(member.name)
                key, _, ext = base.partition(".")
                key = os.path.join(folder, key)
                if current and current["__key__"] != key:
                    yield current
                    current = {}
                handle = tar.extractfile(member)
                current["__key__"] = key
                current[ext.lower()] = handle.read() if handle else b""
    except (tarfile.TarError, OSError, EOFError) as exc:
        skips.add(f"{path}: unreadable tar shard ({exc})")
    if current:
        yield current


def _dist_rank(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if rank is not None and world_size is not None:
        if not 0 <= rank < world_size:
            raise DataError(f"rank={rank}: expected 0 <= rank < world_size={world_size}")
        return rank, world_size
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class ImageTextDataset(IterableDataset):
    """Streaming {"image", "text", "caption", "key", "skipped"} samples with exact resume.

    Args:
        source: world folder (its ``split`` CSV, or shards with ``format="wds"``), a CSV/TSV file,
            a .tar file, a folder of .tar files, or a brace/glob shard pattern.
        transform: PIL image -> tensor (e.g. open_clip's preprocess); without it "image" is a PIL image.
        tokenizer: list[str] -> LongTensor (B, L); without it "text" is the caption string.
        shuffle / seed: per-epoch order from (seed, epoch): rows for CSV, shard order for tar shards.
        rank / world_size: default from torch.distributed when initialised, else 0 / 1.
        chunk_size: samples per round-robin chunk across DataLoader workers; use the batch size.
        skip_counter: where unreadable samples are counted (main-process iteration);
            workers also report them per sample in "skipped".
    """

    def __init__(self, source: str | os.PathLike, split: str = "train", *, format: str = "auto",
                 transform: Callable | None = None, tokenizer: Callable | None = None, shuffle: bool = True,
                 seed: int = 0, rank: int | None = None, world_size: int | None = None, chunk_size: int = 1,
                 csv_img_key: str = "filepath", csv_caption_key: str = "title",
                 csv_separator: str | None = None, skip_counter: SkipCounter | None = None) -> None:
        super().__init__()
        self.format, self.files = _resolve(source, split, format)
        self.rows = read_csv(self.files, csv_img_key, csv_caption_key, csv_separator) if self.format == "csv" else []
        if self.format == "csv" and not self.rows:
            raise DataError(f"{self.files}: CSV has a header but no rows")
        self.transform, self.tokenizer = transform, tokenizer
        self.shuffle, self.seed = shuffle, seed
        self.rank, self.world_size = _dist_rank(rank, world_size)
        if chunk_size < 1:
            raise DataError(f"chunk_size={chunk_size}: expected >= 1 (use the batch size)")
        self.chunk_size = chunk_size
        self.skips = skip_counter if skip_counter is not None else SkipCounter()
        self.epoch, self.position, self._consumed = 0, 0, 0
        if self.format == "wds" and len(self.files) < self.world_size:
            raise DataError(f"{len(self.files)} shard(s) for world_size={self.world_size}: "
                            "expected at least one shard per rank (write smaller shards)")

    @property
    def num_samples(self) -> int | None:
        """Samples per rank per epoch (CSV: every rank gets the same number); None for tar shards."""
        return len(self.rows) // self.world_size if self.format == "csv" else None

    def set_epoch(self, epoch: int) -> None:
        """Start epoch ``epoch`` from its beginning (new shuffle order)."""
        self.epoch, self.position, self._consumed = int(epoch), 0, 0

    def state_dict(self, consumed: int | None = None) -> dict[str, int]:
        """Resume point: epoch and samples of this rank's stream consumed. Pass ``consumed`` (samples
        taken since this iteration started) when iterating through DataLoader workers."""
        done = self._consumed if consumed is None else int(consumed)
        return {"epoch": self.epoch, "position": self.position + done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue from a ``state_dict()``: the next iteration starts at that sample."""
        self.epoch, self.position, self._consumed = int(state["epoch"]), int(state["position"]), 0

    def _order(self, n: int, salt: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(n)
        return np.random.default_rng([self.seed, self.epoch, salt]).permutation(n)

    def _rank_stream(self) -> Iterator[tuple[str, Callable[[], Any], str | None]]:
        """(key, image loader, caption) for this rank's samples in epoch order."""
        if self.format == "csv":
            order = self._order(len(self.rows), 0)
            mine = order[self.rank::self.world_size][: self.num_samples]
            for i in mine:
                path, caption = self.rows[int(i)]
                yield Path(path).stem, (lambda p=path: open_image(p)), caption
            return
        shards = [self.files[int(i)] for i in self._order(len(self.files), 1)][self.rank::self.world_size]
        for shard in shards:
            for sample in _tar_samples(shard, self.skips):
                yield sample["__key__"], (lambda s=sample, n=shard: _sample_image(s, n)), _sample_caption(sample)

    def _mine(self) -> Iterator[tuple[int, tuple]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        for position, item in enumerate(self._rank_stream()):
            if position < self.position:
                continue
            if ((position - self.position) // self.chunk_size) % workers == worker:
                yield position, item

    def __iter__(self) -> Iterator[dict[str, Any]]:
        self._consumed = 0
        pending = 0
        for position, (key, load, caption) in self._mine():
            try:
                if caption is None:
                    raise ImageLoadError(f"{key}: sample has no .txt or .json caption")
                image = load()
            except ImageLoadError as exc:
                self.skips.add(exc)
                pending += 1
                continue
            sample = {"image": self.transform(image) if self.transform else image,
                      "text": self.tokenizer([caption])[0] if self.tokenizer else caption,
                      "caption": caption, "key": key, "skipped": pending}
            pending = 0
            self._consumed = position - self.position + 1
            yield sample


def _sample_image(sample: dict[str, bytes], shard: str) -> Any:
    for ext in IMAGE_EXTENSIONS:
        if ext in sample:
            return decode_image(sample[ext], f"{shard}:{sample['__key__']}.{ext}")
    raise ImageLoadError(f"{shard}:{sample['__key__']}: no image member (expected one of {IMAGE_EXTENSIONS})")


def _sample_caption(sample: dict[str, bytes]) -> str | None:
    if "txt" in sample:
        return sample["txt"].decode("utf-8", errors="replace").strip()
    if "json" in sample:
        import json
        try:
            return str(json.loads(sample["json"]).get("caption", "")) or None
        except (ValueError, AttributeError):
            return None
    return None
