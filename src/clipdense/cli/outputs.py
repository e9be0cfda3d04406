"""Outputs planned before work (issue 32): every path a command will write — the one the user named and the files
it writes beside it — is checked before a model loads or anything is computed, so that a bad one is one line naming
it and nothing is written. The writes themselves are atomic (``config.atomic_write_bytes`` /
``config.atomic_save_picture``)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from ..errors import ConfigError


def blocker(path: Path) -> str | None:
    """Why nothing can be written at ``path``: its nearest existing ancestor is a file, or a folder this user cannot
    write into (None: the path can be made)."""
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                return f"{parent} is a file, not a folder"
            if not os.access(parent, os.W_OK | os.X_OK):
                return f"{parent} is not writable"
            return None
    return None


def check_out_folder(path: str | os.PathLike, flag: str = "--out", what: str = "a folder") -> Path:
    """An output folder: not a file, and makeable (no file among its ancestors, a writable parent)."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{flag} {out}: is a file, expected {what}")
    if out.is_dir() and not os.access(out, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {out}: the folder is not writable")
    why = None if out.is_dir() else blocker(out)
    if why:
        raise ConfigError(f"{flag} {out}: {why}")
    return out


def check_beside(flag: str, given: str | os.PathLike, files: Iterable[Path]) -> None:
    """The files a command writes beside (or inside) the path ``flag`` names: none may be a folder or an unwritable
    file, and no two may be the same file."""
    seen: dict[Path, Path] = {}
    for path in files:
        if path.is_dir():
            raise ConfigError(f"{flag} {given}: {path} (written with it) is a folder, expected a file path")
        if path.exists() and not os.access(path, os.W_OK):
            raise ConfigError(f"{flag} {given}: {path} (written with it) is not writable")
        key = Path(os.path.abspath(path))
        if key in seen:
            raise ConfigError(f"{flag} {given}: two outputs would be the same file {path}")
        seen[key] = path
