"""WebDataset shards of decoded frames, the third video layout (issue 28): tar files whose samples are
``KEY.frames.npy`` (T, H, W, 3 uint8 RGB), ``KEY.txt`` (the caption) and optionally ``KEY.cls`` (a class index)
and ``KEY.json`` (``{"fps": ...}``, the rate the frames were taken at; 1 when absent).

Decoded frames cost disk but no decoder at training time (the CLIP4Clip issue of pre-extracted frames, kept in the
format WebDataset users already stream). ``--data wds-video:path=DIR|'shards-{000..009}.tar'[,frames=T,...]``:
the index of every shard is read at open (map-style, so resume and DDP sharding work as for the other readers);
frames are sampled like a decoded video's (``FrameSampling``). A member that does not decode is skipped, named
and counted like a corrupt image.
"""
from __future__ import annotations

import io
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from ...config import atomic_write_bytes
from ...errors import DataError
from ..images import load_error
from ..sample import Sample
from ..skips import SkipCounter, SkippingDataset
from ..video import FrameSampling, select_frames
from .imagetext import expand_shards

FRAMES = ".frames.npy"


@dataclass(frozen=True)
class ShardClip:
    """One sample of a shard: where its members are and what it says."""

    shard: str
    key: str
    caption: str | None
    label: int | None
    fps: float


def _member_bytes(tar: tarfile.TarFile, name: str) -> bytes:
    handle = tar.extractfile(name)
    if handle is None:
        raise ValueError(f"{name} is not a file")
    return handle.read()


def _index(shard: str) -> list[ShardClip]:
    """The clips of one shard (members grouped by key, as WebDataset groups them)."""
    try:
        with tarfile.open(shard) as tar:
            names = {m.name for m in tar.getmembers() if m.isfile()}
            clips = []
            for name in sorted(n for n in names if n.endswith(FRAMES)):
                key = name[: -len(FRAMES)]
                text = _member_bytes(tar, key + ".txt").decode() if key + ".txt" in names else None
                label = int(_member_bytes(tar, key + ".cls")) if key + ".cls" in names else None
                meta = json.loads(_member_bytes(tar, key + ".json")) if key + ".json" in names else {}
                clips.append(ShardClip(shard, key, text, label, float(meta.get("fps", 1.0))))
            return clips
    except (tarfile.TarError, OSError, ValueError, UnicodeDecodeError) as exc:
        reason = " ".join(str(exc).split())[:160]   # tarfile lists every compression it tried, over lines
        raise DataError(f"{shard}: not a readable WebDataset shard of frames ({reason})") from exc


class FrameShards(SkippingDataset):
    """Decoded-frame shards as ``Sample(image=None, frames, caption[, image_label])``."""

    def __init__(self, path: str | os.PathLike, sampling: FrameSampling | None = None,
                 skip_counter: SkipCounter | None = None) -> None:
        source = Path(path)
        shards = sorted(str(p) for p in source.glob("*.tar")) if source.is_dir() else expand_shards(str(path))
        if not shards:
            raise DataError(f"{path}: no .tar shards (expected a folder of shards or 'shards-{{000..009}}.tar')")
        self.clips = [clip for shard in shards for clip in _index(shard)]
        if not self.clips:
            raise DataError(f"{path}: no KEY{FRAMES} member in its shards (decoded-frame shards expected)")
        self.sampling = sampling or FrameSampling()
        self.skips = skip_counter if skip_counter is not None else SkipCounter()

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> Sample:
        clip = self.clips[index]
        where = f"{clip.shard}:{clip.key}{FRAMES}"
        try:
            with tarfile.open(clip.shard) as tar:
                frames = np.load(io.BytesIO(_member_bytes(tar, clip.key + FRAMES)), allow_pickle=False)
        except (tarfile.TarError, OSError, ValueError, KeyError) as exc:
            raise load_error(where, f"frames do not decode ({exc})") from exc
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) < 1:
            raise load_error(where, f"expected (T, H, W, 3) uint8 frames, got {frames.dtype} {tuple(frames.shape)}")
        chosen = select_frames([(i / clip.fps, f) for i, f in enumerate(frames)], self.sampling)
        return Sample(image=None, key=clip.key, caption=clip.caption, image_label=clip.label,
                      frames=torch.from_numpy(np.stack(chosen)))


def write_frame_shards(out: str | os.PathLike, prefix: str, clips: Iterable[tuple[str, np.ndarray, str, int | None]],
                       fps: float, per_shard: int = 256) -> list[Path]:
    """``clips`` of (key, (T, H, W, 3) uint8 frames, caption, label or None) as ``out/prefix-000000.tar`` ...,
    each shard written atomically."""
    out, written, members = Path(out), [], []
    out.mkdir(parents=True, exist_ok=True)

    def flush() -> None:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for name, data in members:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        path = out / f"{prefix}-{len(written):06d}.tar"
        atomic_write_bytes(path, buffer.getvalue())
        written.append(path)
        members.clear()

    for n, (key, frames, caption, label) in enumerate(clips):
        array = io.BytesIO()
        np.save(array, np.ascontiguousarray(frames, dtype=np.uint8), allow_pickle=False)
        members.extend([(key + FRAMES, array.getvalue()), (key + ".txt", caption.encode()),
                        (key + ".json", json.dumps({"fps": fps}).encode())])
        if label is not None:
            members.append((key + ".cls", str(int(label)).encode()))
        if (n + 1) % per_shard == 0:
            flush()
    if members:
        flush()
    return written
