"""Folder formats: semantic segmentation (ADE20K / VOC / Context layout) and ImageFolder."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from ...errors import DataError, ImageLoadError
from ..images import open_image
from ..sample import Sample
from ..skips import SkipCounter, SkippingDataset
from ..validate import clean_semantic, probe_label_maps

#: label maps read at open to catch a class list that matches none of them
PROBED_MAPS = 8
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def read_classes(source: str | os.PathLike | Sequence[str]) -> list[str]:
    """Class names from a file (one per line, blank lines ignored) or a list."""
    if isinstance(source, (list, tuple)):
        names = [str(n) for n in source]
    else:
        path = Path(source)
        if not path.is_file():
            raise DataError(f"{path}: no such class-name file (expected one class name per line)")
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not names:
        raise DataError(f"{source}: no class names")
    return names


def read_label(path: Path) -> np.ndarray:
    """Raw class indices of a single-channel (L, P or 16-bit) label PNG; no colour conversion."""
    try:
        with Image.open(path) as handle:
            if handle.mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L"):
                raise ImageLoadError(f"{path}: label image mode {handle.mode}, expected single-channel L/P/I")
            return np.asarray(handle, dtype=np.int64)
    except ImageLoadError:
        raise
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageLoadError(f"{path}: unreadable label PNG ({exc})") from exc


class SemSegFolder(SkippingDataset):
    """Images + label PNGs matched by file stem, with class names and an ignore index.

    Yields ``Sample``s with ``semantic`` set. ``reduce_zero_label`` (ADE20K): label 0 means "other" and
    becomes ignore; 1..C become 0..C-1.
    Label values outside [0, C) become ``ignore_index`` and are counted and named in ``skips`` (``validate``); a
    map with no labelled pixel left is skipped, and data whose probed maps hold only such ids is refused at open.
    """

    def __init__(self, image_dir: str | os.PathLike, label_dir: str | os.PathLike,
                 classes: str | os.PathLike | Sequence[str], *, ignore_index: int = 255,
                 reduce_zero_label: bool = False, skip_counter: SkipCounter | None = None) -> None:
        self.classes = read_classes(classes)
        self.ignore_index, self.reduce_zero_label = ignore_index, reduce_zero_label
        self.skips = skip_counter if skip_counter is not None else SkipCounter()
        image_dir, label_dir = Path(image_dir), Path(label_dir)
        for folder in (image_dir, label_dir):
            if not folder.is_dir():
                raise DataError(f"{folder}: no such folder")
        labels = {p.stem: p for p in label_dir.iterdir() if p.suffix.lower() == ".png"}
        self.pairs = [(p, labels[p.stem]) for p in sorted(image_dir.iterdir())
                      if p.suffix.lower() in IMAGE_SUFFIXES and p.stem in labels]
        if not self.pairs:
            raise DataError(f"{image_dir} + {label_dir}: no image has a label PNG with the same stem")
        self._probe(label_dir)

    def _probe(self, label_dir: Path) -> None:
        """Refuse at open when the first few label maps hold only ids beyond the class list (``validate``)."""
        step = max(1, len(self.pairs) // PROBED_MAPS)
        maps = []
        for _, label_path in self.pairs[::step][:PROBED_MAPS]:
            try:
                maps.append(self._ids(read_label(label_path)))
            except ImageLoadError:
                continue   # counted when the sample is read
        probe_label_maps(maps, len(self.classes), self.ignore_index, f"the label PNGs of {label_dir}")

    def _ids(self, raw: np.ndarray) -> np.ndarray:
        """Class indices of a raw label map (reduce_zero_label applied; ignore_index kept)."""
        label = raw - 1 if self.reduce_zero_label else raw.copy()
        if self.reduce_zero_label:
            label[raw == 0] = self.ignore_index
        label[raw == self.ignore_index] = self.ignore_index
        return label

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> Sample:
        image_path, label_path = self.pairs[index]
        image = open_image(image_path)
        label = clean_semantic(self._ids(read_label(label_path)), len(self.classes), self.ignore_index,
                               image.width, image.height, str(label_path), self.skips)
        return Sample(image, image_path.stem, semantic=label, ignore_index=self.ignore_index)


class ImageFolderDataset(SkippingDataset):
    """root/<class name>/<image>: class names are the folder names (sorted); ``Sample.image_label`` their index."""

    def __init__(self, root: str | os.PathLike, *, skip_counter: SkipCounter | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"{self.root}: no such ImageFolder root")
        self.classes = sorted(p.name for p in self.root.iterdir() if p.is_dir())
        if not self.classes:
            raise DataError(f"{self.root}: no class folders (expected root/<class name>/<image>)")
        self.samples = [(p, i) for i, name in enumerate(self.classes) for p in sorted((self.root / name).iterdir())
                        if p.suffix.lower() in IMAGE_SUFFIXES]
        if not self.samples:
            raise DataError(f"{self.root}: class folders hold no images with suffix {IMAGE_SUFFIXES}")
        self.skips = skip_counter if skip_counter is not None else SkipCounter()

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Sample:
        path, label = self.samples[index]
        return Sample(open_image(path), f"{path.parent.name}/{path.stem}", image_label=label)
