"""What kind of medium a file holds, by its suffix: images, and the other modalities' files (point clouds and meshes,
sounds, videos) as their families register them. Tasks that take "a file" (``classify``, ``search``) dispatch on
this registry, never on ad-hoc suffix checks."""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".ppm", ".pgm")

#: lower-case suffix -> medium ("image", and whatever a family adds: "points", "audio", "video" ...)
MEDIA: dict[str, str] = {suffix: "image" for suffix in IMAGE_SUFFIXES}


def register_media(kind: str, suffixes: tuple[str, ...]) -> None:
    """Declare that files with these suffixes hold ``kind`` (a suffix already taken by another kind is an error)."""
    for suffix in suffixes:
        taken = MEDIA.get(suffix.lower())
        if taken not in (None, kind):
            raise ValueError(f"suffix {suffix} is already registered as {taken}")
        MEDIA[suffix.lower()] = kind


def media_kind(path: str | os.PathLike) -> str:
    """The medium of ``path`` by its suffix; an unknown suffix is an image (Pillow decides, and says if not)."""
    return MEDIA.get(Path(path).suffix.lower(), "image")


def known_media() -> str:
    """'image (.png, .jpg ...), ...' for messages."""
    kinds: dict[str, list[str]] = {}
    for suffix, kind in MEDIA.items():
        kinds.setdefault(kind, []).append(suffix)
    return "; ".join(f"{kind} ({', '.join(sorted(s)[:4])}{' ...' if len(s) > 4 else ''})" for kind, s in kinds.items())


def require_kind(path: str | os.PathLike, kind: str, what: str) -> None:
    """One line when a file of another medium is given where ``kind`` is expected."""
    found = media_kind(path)
    if found != kind:
        raise DataError(f"{what} {path}: a {found} file, expected a {kind} file")
