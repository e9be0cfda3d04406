"""The files readers skip: counted, and named (path + reason), so a run can say what data it lost.

A training run attaches a ``SkipLog`` to its reader's counter: every skipped file becomes one line
``path<TAB>reason`` of ``RUN/skipped_files.tsv``, written by whichever process met it (DataLoader workers
hold copies of the counter, so the log is a file they append to, not a list in one process).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from torch.utils.data import Dataset

from ..errors import DataError, ImageLoadError

#: distinct skip messages kept in memory (results name them; the log file has every one)
MAX_EXAMPLES = 1000
SKIP_LOG = "skipped_files.tsv"


def skip_record(reason: object) -> tuple[str, str]:
    """(file, reason) of a skip: an ImageLoadError made by ``data.images`` carries both; other messages read
    'FILE: REASON'."""
    path, why = getattr(reason, "path", None), getattr(reason, "reason", None)
    if isinstance(path, str) and isinstance(why, str):
        return path, why
    text = str(reason)
    head, sep, tail = text.partition(": ")
    return (head, tail) if sep else (text, "unreadable")


def _clean(text: str) -> str:
    return " ".join(text.replace("\t", " ").split())


@dataclass
class SkipLog:
    """Appends ``file<TAB>reason`` lines to ``path`` once per distinct pair (picklable: only the path travels)."""

    path: Path
    _seen: set[tuple[str, str]] | None = field(default=None, repr=False, compare=False)

    def write(self, reason: object) -> None:
        record = tuple(_clean(part) for part in skip_record(reason))
        if self._seen is None:
            self._seen = set(read_skip_log(self.path))
        if record in self._seen:
            return
        self._seen.add(record)   # type: ignore[arg-type]
        line = ("\t".join(record) + "\n").encode("utf-8", errors="replace")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            os.write(fd, line)   # one write per line: appends from several processes do not interleave
        finally:
            os.close(fd)

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "_seen": None}


def read_skip_log(path: str | os.PathLike) -> list[tuple[str, str]]:
    """The (file, reason) pairs of a skip log, in the order met ([] if there is none)."""
    path = Path(path)
    if not path.is_file():
        return []
    pairs = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        file, sep, why = line.partition("\t")
        if sep:
            pairs.append((file, why))
    return pairs


@dataclass
class SkipCounter:
    """Number of skipped (corrupt/unreadable) samples, their distinct messages, and an optional log file.

    DataLoader workers hold copies: the image-text reader reports each sample's skips in its
    ``"skipped"`` field, which ``add_batch`` folds into the main process's counter; the copies write
    their names to the shared ``log`` themselves.
    """

    count: int = 0
    examples: list[str] = field(default_factory=list)
    log: SkipLog | None = field(default=None, repr=False, compare=False)
    #: skips met before a log was attached (annotations a reader drops while it opens), written when one is
    _pending: list = field(default_factory=list, repr=False, compare=False)

    def __setattr__(self, name: str, value: Any) -> None:
        """Attaching a ``log`` writes the skips counted before it (a reader validates its file at open, the run
        folder's log is attached after)."""
        object.__setattr__(self, name, value)
        if name == "log" and value is not None and getattr(self, "_pending", None):
            for reason in self._pending:
                value.write(reason)
            self._pending.clear()

    def add(self, reason: object, n: int = 1) -> None:
        """Record ``n`` skipped samples: count them, keep the message, name the file in the log."""
        self.count += n
        text = str(reason)
        if len(self.examples) < MAX_EXAMPLES and text not in self.examples:
            self.examples.append(text)
        if self.log is not None:
            self.log.write(reason)
        elif len(self._pending) < MAX_EXAMPLES * 100:
            self._pending.append(reason)

    def add_batch(self, batch: dict) -> None:
        """Add the skips a worker reported in a batch's ``skipped`` field (int, list or tensor)."""
        skipped = batch.get("skipped", 0)
        total = int(skipped.sum()) if hasattr(skipped, "sum") else int(sum(skipped) if isinstance(
            skipped, (list, tuple)) else skipped)
        if total:
            self.count += total

    def summary(self) -> str:
        """One line for the end of a run."""
        if not self.count:
            return "skipped 0 unreadable files"
        return f"skipped {self.count} unreadable file(s) or unusable annotation(s), e.g. " + "; ".join(self.examples[:3])


class SkippingDataset(Dataset):
    """Map-style dataset whose iteration skips unreadable images and counts them in ``skips``."""

    skips: SkipCounter

    def __len__(self) -> int:
        raise DataError(f"{type(self).__name__} must define __len__")

    def __iter__(self) -> Iterator[Any]:
        for index in range(len(self)):
            try:
                yield self[index]
            except ImageLoadError as exc:
                self.skips.add(exc)
