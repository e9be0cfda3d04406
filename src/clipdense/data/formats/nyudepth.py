"""NYU-style depth: an image folder and a folder of 16-bit PNG depth maps in millimetres, matched by file stem
(0 = no measurement). ``--data nyu-depth:images=DIR,depths=DIR``.

The unit is checked on reading: an 8-bit PNG, or a 16-bit one whose largest value is under ``MIN_MAX_MM`` (a map
in metres or centimetres saved as integers), is refused in one line.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ...errors import DataError
from ..images import load_error, open_image
from ..sample import Sample
from ..skips import SkipCounter, SkippingDataset
from ..validate import check_size
from .folders import IMAGE_SUFFIXES

#: a millimetre depth map of any real scene has some pixel beyond 0.1 m; below this, the unit is wrong
MIN_MAX_MM = 100


def read_depth_png(path: str | os.PathLike) -> np.ndarray:
    """(H, W) float32 metres of a 16-bit millimetre PNG (0 stays 0 = unknown)."""
    path = Path(path)
    try:
        with Image.open(path) as handle:
            mode = handle.mode
            array = np.asarray(handle)
    except (OSError, ValueError, SyntaxError) as exc:   # one broken file is skipped and counted, like an image
        raise load_error(str(path), f"unreadable depth PNG ({exc})") from None
    if mode not in ("I;16", "I;16B", "I;16L", "I"):
        raise DataError(f"{path}: a {mode} image; expected a 16-bit PNG of depth in millimetres")
    array = array.astype(np.float32)
    if array.ndim != 2:
        raise DataError(f"{path}: expected a single-channel depth map, got shape {array.shape}")
    largest = float(array.max()) if array.size else 0.0
    if 0 < largest < MIN_MAX_MM:
        raise DataError(f"{path}: largest depth value {largest:.0f}: looks like metres or centimetres; expected "
                        "millimetres (NYU-style 16-bit PNG)")
    return array / 1000.0


def write_depth_png(path: str | os.PathLike, metres: np.ndarray) -> None:
    """Metres -> 16-bit PNG in millimetres (rounded, clipped to 65.535 m), written atomically."""
    from ...config import atomic_save_picture

    mm = np.clip(np.round(np.asarray(metres, dtype=np.float64) * 1000), 0, 65535).astype(np.uint16)
    atomic_save_picture(Image.fromarray(mm), path)


class DepthFolder(SkippingDataset):
    """Images and their depth PNGs as ``Sample``s with ``depth`` ((H, W) metres, the image's size)."""

    def __init__(self, image_dir: str | os.PathLike, depth_dir: str | os.PathLike,
                 skip_counter: SkipCounter | None = None) -> None:
        self.image_dir, self.depth_dir = Path(image_dir), Path(depth_dir)
        self.skips = skip_counter if skip_counter is not None else SkipCounter()
        for folder, flag in ((self.image_dir, "images"), (self.depth_dir, "depths")):
            if not folder.is_dir():
                raise DataError(f"nyu-depth {flag}={folder}: no such folder")
        depths = {p.stem: p for p in self.depth_dir.glob("*.png")}
        self.items = [(p, depths[p.stem]) for p in sorted(self.image_dir.iterdir())
                      if p.suffix.lower() in IMAGE_SUFFIXES and p.stem in depths]
        if not self.items:
            raise DataError(f"nyu-depth: no image in {self.image_dir} has a depth PNG of the same name in "
                            f"{self.depth_dir}")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Sample:
        image_path, depth_path = self.items[index]
        image = open_image(image_path)
        depth = read_depth_png(depth_path)
        check_size(depth.shape, image.width, image.height, str(depth_path), "depth map")   # skipped and counted
        return Sample(image=image, key=image_path.stem, depth=torch.from_numpy(depth))
