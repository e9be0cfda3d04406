"""Sound layouts users already have, reader and writer each:

- ESC-50: ``ROOT/audio/*.wav`` + ``ROOT/meta/esc50.csv`` (filename, fold, target, category, esc10, src_file, take);
- UrbanSound8K: ``ROOT/audio/foldN/*.wav`` + ``ROOT/metadata/UrbanSound8K.csv`` (slice_file_name, fsID, start, end,
  salience, fold, classID, class);
- image-sound-text triplets: an open_clip-style CSV with an ``audiopath`` column beside ``filepath`` and ``title``
  (paths relative to the CSV), as the sounding world writes them.

Class names come from the metadata (category / class), underscores read as spaces so prompts read naturally
("chirping_birds" -> "chirping birds"); labels are the file's own target / classID, so numbers match the papers'.
A corrupt or unreadable sound is skipped, named and counted like a corrupt image; a metadata row whose fold or
class id is not a non-negative integer (fold >= 1) or that names no file is dropped and named the same way (the
validation layer's rule), and a file with no usable row is refused in one line.
"""
from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from ...config import atomic_write_bytes
from ...errors import DataError
from ..audio import read_audio, wav_bytes
from ..images import open_image
from ..sample import Sample
from ..skips import SkipCounter, SkippingDataset
from ..validate import MALFORMED, BoxDrops, require_usable, skip_error

ESC50_COLUMNS = ("filename", "fold", "target", "category", "esc10", "src_file", "take")
US8K_COLUMNS = ("slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class")


@dataclass(frozen=True)
class SoundClip:
    """One labelled clip of a layout: its file, fold (1-based) and class index."""

    path: Path
    fold: int
    label: int


def _read_csv(path: Path, columns: Sequence[str], layout: str) -> list[dict[str, str]]:
    if not path.is_file():
        raise DataError(f"{path}: no such metadata file (the {layout} layout keeps it there)")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{path}: missing column(s) {missing}; expected the {layout} columns {list(columns)}")
        return list(reader)


def _int(row: dict[str, str], key: str, path: Path, line: int, low: int = 0) -> int:
    try:
        value = int(row[key])
    except (TypeError, ValueError) as exc:
        raise DataError(f"{path}: line {line}: {key} {row[key]!r} is not an integer") from exc
    if value < low:
        raise DataError(f"{path}: line {line}: {key} {value} is below {low}")
    return value


def _clip_rows(rows: list[dict[str, str]], meta: Path, parse, skips: SkipCounter | None) -> list[tuple]:
    """``parse(row, line)`` of each metadata row; a row it refuses (DataError) is dropped and named in ``skips``,
    and a file left with no row is refused in one line."""
    out, drops = [], BoxDrops()
    for i, row in enumerate(rows):
        drops.total += 1
        try:
            out.append((parse(row, i + 2), row))
        except DataError as error:
            drops.drop(MALFORMED, str(error))
            if skips is not None:
                skips.add(skip_error(f"{meta}: line {i + 2}", f"{str(error).rpartition(': ')[2]}; row dropped"))
    require_usable(drops, str(meta), "row")
    return out


def _classes(pairs: Iterable[tuple[int, str]], path: Path) -> list[str]:
    """Class names by index from (index, name) pairs; gaps or one index with two names are errors."""
    names: dict[int, str] = {}
    for index, name in pairs:
        name = name.replace("_", " ").strip()
        if names.setdefault(index, name) != name:
            raise DataError(f"{path}: class index {index} is both {names[index]!r} and {name!r}")
    if sorted(names) != list(range(len(names))):
        raise DataError(f"{path}: class indices {sorted(names)} are not 0..{len(names) - 1}")
    return [names[i] for i in range(len(names))]


class SoundClips(SkippingDataset):
    """Labelled sound clips (ESC-50 / UrbanSound8K) as ``Sample(image=None, audio=..., image_label=...)``.

    Args:
        clips: the layout's clips.
        classes: class names in label order.
        folds: keep only these folds (None: all).
    """

    def __init__(self, clips: Sequence[SoundClip], classes: Sequence[str], folds: Iterable[int] | None = None,
                 skip_counter: SkipCounter | None = None) -> None:
        wanted = None if folds is None else set(folds)
        self.clips = [c for c in clips if wanted is None or c.fold in wanted]
        self.classes = list(classes)
        self.skips = skip_counter if skip_counter is not None else SkipCounter()

    @property
    def folds(self) -> list[int]:
        return [c.fold for c in self.clips]

    @property
    def labels(self) -> list[int]:
        return [c.label for c in self.clips]

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> Sample:
        clip = self.clips[index]
        return Sample(image=None, key=clip.path.stem, audio=read_audio(clip.path), image_label=clip.label)


def open_esc50(root: str | os.PathLike, folds: Iterable[int] | None = None,
               skip_counter: SkipCounter | None = None) -> SoundClips:
    """The ESC-50 layout under ``root``."""
    root = Path(root)
    meta = root / "meta" / "esc50.csv"
    rows = _read_csv(meta, ESC50_COLUMNS[:4], "ESC-50")
    skips = skip_counter if skip_counter is not None else SkipCounter()

    def parse(r: dict[str, str], line: int) -> SoundClip:
        if not (r["filename"] or "").strip():
            raise DataError(f"{meta}: line {line}: no filename")
        return SoundClip(root / "audio" / r["filename"], _int(r, "fold", meta, line, 1),
                         _int(r, "target", meta, line))
    kept = _clip_rows(rows, meta, parse, skips)
    classes = _classes(((c.label, r["category"] or "") for c, r in kept), meta)
    return SoundClips([c for c, _ in kept], classes, folds, skips)


def open_urbansound(root: str | os.PathLike, folds: Iterable[int] | None = None,
                    skip_counter: SkipCounter | None = None) -> SoundClips:
    """The UrbanSound8K layout under ``root``."""
    root = Path(root)
    meta = root / "metadata" / "UrbanSound8K.csv"
    rows = _read_csv(meta, ("slice_file_name", "fold", "classID", "class"), "UrbanSound8K")
    skips = skip_counter if skip_counter is not None else SkipCounter()

    def parse(r: dict[str, str], line: int) -> SoundClip:
        if not (r["slice_file_name"] or "").strip():
            raise DataError(f"{meta}: line {line}: no slice_file_name")
        fold = _int(r, "fold", meta, line, 1)
        return SoundClip(root / "audio" / f"fold{fold}" / r["slice_file_name"], fold, _int(r, "classID", meta, line))
    kept = _clip_rows(rows, meta, parse, skips)
    classes = _classes(((c.label, r["class"] or "") for c, r in kept), meta)
    return SoundClips([c for c, _ in kept], classes, folds, skips)


def _csv_bytes(header: Sequence[str], rows: Iterable[Sequence[object]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode()


def write_esc50(root: str | os.PathLike, clips: Iterable[tuple[str, int, int, object]], classes: Sequence[str],
                sample_rate: int) -> int:
    """Write ``(filename, fold, target, samples)`` clips in the ESC-50 layout (16-bit PCM); returns the count."""
    root = Path(root)
    (root / "audio").mkdir(parents=True, exist_ok=True)
    rows = []
    for name, fold, target, samples in clips:
        (root / "audio" / name).write_bytes(wav_bytes(samples, sample_rate))
        rows.append((name, fold, target, classes[target].replace(" ", "_"), "False", name.split("-")[1], "A"))
    (root / "meta").mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(root / "meta" / "esc50.csv", _csv_bytes(ESC50_COLUMNS, rows))
    return len(rows)


def write_urbansound(root: str | os.PathLike, clips: Iterable[tuple[str, int, int, object]],
                     classes: Sequence[str], sample_rate: int) -> int:
    """Write ``(slice_file_name, fold, classID, samples)`` clips in the UrbanSound8K layout; returns the count."""
    root = Path(root)
    rows = []
    for name, fold, label, samples in clips:
        folder = root / "audio" / f"fold{fold}"
        folder.mkdir(parents=True, exist_ok=True)
        data = wav_bytes(samples, sample_rate)
        (folder / name).write_bytes(data)
        seconds = (len(data) - 44) / 2 / sample_rate
        rows.append((name, name.split("-")[0], 0.0, round(seconds, 6), 1, fold, label, classes[label].replace(" ", "_")))
    (root / "metadata").mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(root / "metadata" / "UrbanSound8K.csv", _csv_bytes(US8K_COLUMNS, rows))
    return len(rows)


class SoundTriplets(SkippingDataset):
    """Image-sound-text triplets from a CSV (``filepath``, ``audiopath``, ``title``; paths relative to the CSV)."""

    def __init__(self, path: str | os.PathLike, skip_counter: SkipCounter | None = None) -> None:
        self.path = Path(path)
        rows = _read_csv(self.path, ("filepath", "audiopath", "title"), "image-sound-text CSV")
        base = self.path.parent
        self.rows = [(base / r["filepath"], base / r["audiopath"], r["title"]) for r in rows]
        if not self.rows:
            raise DataError(f"{self.path}: no rows")
        self.skips = skip_counter if skip_counter is not None else SkipCounter()

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> Sample:
        image, sound, title = self.rows[index]
        return Sample(image=open_image(image), key=sound.stem, caption=title, audio=read_audio(sound))


def write_triplets_csv(path: str | os.PathLike, rows: Iterable[tuple[str, str, str]]) -> None:
    """The triplet CSV (paths relative to its folder)."""
    atomic_write_bytes(Path(path), _csv_bytes(("filepath", "audiopath", "title"), rows))
