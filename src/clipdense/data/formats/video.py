"""Video layouts users already have, reader and writer each:

- MSR-VTT as CLIP4Clip reads it: ``ROOT/videos/all/<video_id>.mp4``, ``ROOT/MSRVTT_data.json`` (``videos``: video_id,
  split, id; ``sentences``: caption, video_id, sen_id), the training list ``ROOT/MSRVTT_train.9k.csv`` (column
  ``video_id``) and the 1k-A test list ``ROOT/MSRVTT_JSFUSION_test.csv`` (key, vid_key, video_id, sentence: one
  sentence per test video). Training yields every (video, sentence) pair of the training list; the test split yields
  the test list's rows (``test=FILE`` names another list of the same columns, e.g. the world's order split).
- Kinetics-style class folders: ``ROOT/<split>/<class>/*.mp4`` (underscores in folder names read as spaces); the
  classes of a split are its folder names, sorted.

Frames are sampled in the reader (``data/video.py`` ``FrameSampling``); a corrupt or unreadable video is skipped,
named and counted like a corrupt image.
"""
from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ...config import atomic_write_bytes
from ...errors import DataError
from ..sample import Sample
from ..skips import SkipCounter, SkippingDataset
from ..video import VIDEO_SUFFIXES, FrameSampling, read_video

MSRVTT_JSON = "MSRVTT_data.json"
MSRVTT_TRAIN = "MSRVTT_train.9k.csv"
MSRVTT_TEST = "MSRVTT_JSFUSION_test.csv"
TEST_COLUMNS = ("key", "vid_key", "video_id", "sentence")


@dataclass(frozen=True)
class VideoText:
    """One (video, sentence) pair of a retrieval layout."""

    video_id: str
    sentence: str


def _csv_rows(path: Path, columns: Sequence[str]) -> list[dict[str, str]]:
    if not path.is_file():
        raise DataError(f"{path}: no such file (the MSR-VTT layout keeps its split lists beside MSRVTT_data.json)")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{path}: missing column(s) {missing}; expected {list(columns)}")
        return list(reader)


def _video_dir(root: Path) -> Path:
    return root / "videos" / "all" if (root / "videos" / "all").is_dir() else root / "videos"


def read_msrvtt_pairs(root: str | os.PathLike, split: str = "train", test: str | None = None) -> list[VideoText]:
    """The (video, sentence) pairs of an MSR-VTT split: every sentence of the training list's videos, or the rows
    of the test list (``test``: its file name under ``root``, default the 1k-A list)."""
    root = Path(root)
    if split != "train":
        rows = _csv_rows(root / (test or MSRVTT_TEST), TEST_COLUMNS)
        return [VideoText(r["video_id"], r["sentence"]) for r in rows]
    meta = root / MSRVTT_JSON
    try:
        data = json.loads(meta.read_text(encoding="utf-8"))
        sentences = data["sentences"]
    except FileNotFoundError as exc:
        raise DataError(f"{meta}: no such file (the MSR-VTT layout's annotations)") from exc
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DataError(f"{meta}: not MSR-VTT annotations (expected JSON with 'videos' and 'sentences')") from exc
    wanted = [r["video_id"] for r in _csv_rows(root / MSRVTT_TRAIN, ("video_id",))]
    if not isinstance(sentences, list):
        raise DataError(f"{meta}: 'sentences' is not a list (expected MSR-VTT's [{{video_id, caption, sen_id}}, ...])")
    by_video: dict[str, list[str]] = {}
    for n, s in enumerate(sentences):
        if not isinstance(s, dict) or "video_id" not in s or "caption" not in s:
            raise DataError(f"{meta}: sentences[{n}] is not an entry with 'video_id' and 'caption' ({str(s)[:60]})")
        by_video.setdefault(str(s["video_id"]), []).append(str(s["caption"]))
    missing = [v for v in wanted if v not in by_video]
    if missing:
        raise DataError(f"{meta}: no sentence for {len(missing)} training video(s), e.g. {missing[0]}")
    return [VideoText(v, sentence) for v in wanted for sentence in by_video[v]]


class MsrvttClips(SkippingDataset):
    """MSR-VTT (video, sentence) pairs as ``Sample(image=None, frames=..., caption=...)``.

    ``video_ids`` gives each sample's video (a video with several sentences appears once per sentence).
    """

    def __init__(self, root: str | os.PathLike, split: str = "train", test: str | None = None,
                 sampling: FrameSampling | None = None, skip_counter: SkipCounter | None = None) -> None:
        self.root = Path(root)
        self.pairs = read_msrvtt_pairs(self.root, split, test)
        self.videos = _video_dir(self.root)
        self.sampling = sampling or FrameSampling()
        self.skips = skip_counter if skip_counter is not None else SkipCounter()

    @property
    def video_ids(self) -> list[str]:
        return [p.video_id for p in self.pairs]

    def path(self, video_id: str) -> Path:
        return self.videos / f"{video_id}.mp4"

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> Sample:
        pair = self.pairs[index]
        return Sample(image=None, key=f"{pair.video_id}#{index}", caption=pair.sentence,
                      frames=read_video(self.path(pair.video_id), self.sampling))


def write_msrvtt_meta(root: str | os.PathLike, sentences: dict[str, list[str]], splits: dict[str, str],
                      test_lists: dict[str, list[VideoText]]) -> None:
    """MSR-VTT's annotation files for videos already written under ``root/videos/all``: ``sentences`` per video id,
    each video's split (``train`` / ``validate`` / ``test``), and test lists by file name (1k-A style rows)."""
    root = Path(root)
    videos = [{"video_id": v, "split": splits[v], "id": i, "category": 0} for i, v in enumerate(sentences)]
    captions = [{"caption": c, "video_id": v, "sen_id": n}
                for n, (v, c) in enumerate((v, c) for v, cs in sentences.items() for c in cs)]
    atomic_write_bytes(root / MSRVTT_JSON, json.dumps({"videos": videos, "sentences": captions}).encode())
    train = io.StringIO()
    csv.writer(train, lineterminator="\n").writerows([["video_id"]] + [[v] for v in sentences if splits[v] == "train"])
    atomic_write_bytes(root / MSRVTT_TRAIN, train.getvalue().encode())
    for name, rows in test_lists.items():
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(TEST_COLUMNS)
        writer.writerows([f"ret{i}", f"msr{i}", r.video_id, r.sentence] for i, r in enumerate(rows))
        atomic_write_bytes(root / name, out.getvalue().encode())


@dataclass(frozen=True)
class LabelledVideo:
    path: Path
    label: int


class KineticsClips(SkippingDataset):
    """Kinetics-style class folders ``root/split/<class>/*.mp4`` as ``Sample(image=None, frames, image_label)``."""

    def __init__(self, root: str | os.PathLike, split: str = "train", sampling: FrameSampling | None = None,
                 skip_counter: SkipCounter | None = None) -> None:
        folder = Path(root) / split
        if not folder.is_dir():
            raise DataError(f"{folder}: no such folder (the Kinetics layout is ROOT/{split}/<class>/*.mp4)")
        names = sorted(d.name for d in folder.iterdir() if d.is_dir())
        if not names:
            raise DataError(f"{folder}: no class folders (expected {folder}/<class>/*.mp4)")
        self.classes = [n.replace("_", " ") for n in names]
        self.clips = [LabelledVideo(p, i) for i, n in enumerate(names) for p in sorted((folder / n).iterdir())
                      if p.suffix.lower() in VIDEO_SUFFIXES]
        if not self.clips:
            raise DataError(f"{folder}: no video files ({', '.join(VIDEO_SUFFIXES)}) in its class folders")
        self.sampling = sampling or FrameSampling()
        self.skips = skip_counter if skip_counter is not None else SkipCounter()

    @property
    def labels(self) -> list[int]:
        return [c.label for c in self.clips]

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> Sample:
        clip = self.clips[index]
        return Sample(image=None, key=f"{clip.path.parent.name}/{clip.path.stem}", image_label=clip.label,
                      frames=read_video(clip.path, self.sampling))


def kinetics_path(root: str | os.PathLike, split: str, class_name: str, name: str) -> Path:
    """Where a clip of ``class_name`` goes in the Kinetics layout (spaces in folder names as underscores)."""
    folder = Path(root) / split / class_name.replace(" ", "_")
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{name}.mp4"
