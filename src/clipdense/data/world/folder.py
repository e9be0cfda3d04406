"""Open a world folder written by `clipdense data synth`: class lists and where each format lives."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import DataError


@dataclass(frozen=True)
class WorldSplit:
    """Absolute paths of one split's files in every format."""

    name: str
    images: int
    image_dir: Path
    csv: Path
    shards: str | None          # brace pattern, absolute, or None when the split is empty
    instances: Path
    stuff: Path
    panoptic: Path
    panoptic_dir: Path
    semseg_dir: Path
    classify_dir: Path


@dataclass(frozen=True)
class World:
    """A world folder's metadata. ``classes`` = things + stuff (semantic label i = category id i + 1)."""

    root: Path
    meta: dict[str, Any]

    @property
    def things(self) -> list[str]:
        return list(self.meta["things"])

    @property
    def stuff(self) -> list[str]:
        return list(self.meta["stuff"])

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def base_things(self) -> list[str]:
        return list(self.meta["base_things"])

    @property
    def novel_things(self) -> list[str]:
        return list(self.meta["novel_things"])

    @property
    def novel_words(self) -> list[str]:
        return list(self.meta["novel_words"])

    @property
    def ignore_index(self) -> int:
        return int(self.meta["semseg"]["ignore_index"])

    @property
    def classes_file(self) -> Path:
        return self.root / self.meta["semseg"]["classes_file"]

    @property
    def image_size(self) -> int:
        return int(self.meta["image_size"])

    @property
    def splits(self) -> list[str]:
        return list(self.meta["splits"])

    def split(self, name: str) -> WorldSplit:
        """Paths of split ``name`` ("train" or "val")."""
        if name not in self.meta["splits"]:
            raise DataError(f"{self.root}/world.json: no split {name!r}; available: {self.splits}")
        s = self.meta["splits"][name]
        return WorldSplit(
            name=name, images=int(s["images"]), image_dir=self.root / s["image_dir"], csv=self.root / s["csv"],
            shards=str(self.root / s["shards"]) if s.get("shards") else None,
            instances=self.root / s["instances"], stuff=self.root / s["stuff"], panoptic=self.root / s["panoptic"],
            panoptic_dir=self.root / s["panoptic_dir"], semseg_dir=self.root / s["semseg_dir"],
            classify_dir=self.root / s["classify_dir"])


def is_world(path: str | os.PathLike) -> bool:
    """True if ``path`` is a folder with a world.json."""
    return (Path(path) / "world.json").is_file()


def open_world(path: str | os.PathLike) -> World:
    """Read WORLD/world.json; DataError names the path and what was expected."""
    root = Path(path)
    if not root.exists():
        raise DataError(f"{root}: no such world folder (make one with `clipdense data synth --out {root}`)")
    meta_path = root / "world.json"
    if not meta_path.is_file():
        raise DataError(f"{root}: not a clipdense world (expected {meta_path}, written by `clipdense data synth`)")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{meta_path}: not valid JSON ({exc})") from exc
    missing = [k for k in ("things", "stuff", "classes", "splits", "semseg") if k not in meta]
    if meta.get("format") != "clipdense-world" or missing:
        raise DataError(f"{meta_path}: expected a clipdense-world file; missing keys {missing}")
    return World(root.resolve(), meta)
