"""A disk-backed cache of a frozen teacher's embeddings, keyed by (image, crop box, input size).

The CLIPSelf teacher never changes, so with fixed regions its crop embeddings are the same in
every epoch: compute each once. The file name carries a fingerprint of the teacher's weights, so
a different teacher never reads another's entries.
"""
from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import torch
from torch import nn

from ..config import atomic_write_bytes
from ..errors import DataError
from ..models.weights import safe_torch_load


def teacher_fingerprint(model: nn.Module, extra: str = "") -> str:
    """SHA-1 of every tensor in the state dict (names, shapes, bytes) plus ``extra``."""
    digest = hashlib.sha1(extra.encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().float().numpy().tobytes())
    return digest.hexdigest()[:16]


class TeacherCache:
    """int64 key -> embedding, loaded at start and flushed atomically as it grows."""

    def __init__(self, folder: str | os.PathLike, fingerprint: str) -> None:
        if Path(folder).exists() and not Path(folder).is_dir():
            raise DataError(f"--teacher-cache {folder}: is a file, expected a folder (new or a cache's)")
        self.path = Path(folder) / f"teacher-{fingerprint}.pt"
        self.entries: dict[int, torch.Tensor] = {}
        self.unsaved = 0
        self.hits = self.misses = 0
        if self.path.is_file():
            self._load()

    def _load(self) -> None:
        stored = safe_torch_load(self.path, "the teacher cache (delete it to rebuild)", DataError)
        if not isinstance(stored, dict) or not {"keys", "values"} <= set(stored):
            raise DataError(f"{self.path}: not a teacher cache (expected keys and values); delete it to rebuild")
        keys, values = stored["keys"], stored["values"]
        self.entries = dict(zip(keys.tolist(), values.unbind(0)))

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, key: int) -> bool:
        return key in self.entries

    def lookup(self, keys: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
        """(found mask, per-key embedding or None)."""
        values = [self.entries.get(int(k)) for k in keys.tolist()]
        found = torch.tensor([v is not None for v in values], dtype=torch.bool)
        self.hits += int(found.sum())
        self.misses += int((~found).sum())
        return found, values

    def store(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        for key, value in zip(keys.tolist(), values.detach().float().cpu().unbind(0)):
            if key not in self.entries:
                self.entries[key] = value.clone()
                self.unsaved += 1

    def flush(self) -> None:
        """Write all entries (temp file + rename) if anything is new."""
        if not self.unsaved:
            return
        keys = torch.tensor(list(self.entries), dtype=torch.int64)
        values = torch.stack(list(self.entries.values()))
        buffer = io.BytesIO()
        torch.save({"keys": keys, "values": values}, buffer)
        atomic_write_bytes(self.path, buffer.getvalue())
        self.unsaved = 0
