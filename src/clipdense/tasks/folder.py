"""A task over a folder of images that can be stopped at any point and resumed.

    job = FolderJob(root="photos", out="labels", settings={...})
    summary = run_folder(job, SegmentFolder(bundle, classes))

Each finished image is appended to ``OUT/progress.jsonl`` (one line, one write) after its own outputs are written
atomically; a run started again on the same ``OUT`` reads that journal and does only the rest. The task's summary
files (a CSV, a COCO results JSON) are rewritten from the journal at the end, sorted by path, so a run killed midway
and resumed writes the same files as one that never stopped. ``OUT/folder-run.json`` holds the settings the outputs
depend on; resuming with other settings is refused in one line. Unreadable files are skipped, counted and named in
``OUT/skipped_files.tsv`` (tried again by the next run). Pending images are taken in order of their pixel size
(read from the file headers) so that images of one size share a forward.
"""
from __future__ import annotations

import json
import os
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from PIL import Image

from ..config import atomic_write_bytes
from ..data.images import open_image
from ..data.skips import SKIP_LOG, SkipCounter, SkipLog
from ..errors import ConfigError, ImageLoadError
from ..models.precision import inference_precision
from .batching import DEFAULT_BATCH, list_images

JOURNAL = "progress.jsonl"
MANIFEST = "folder-run.json"


class FolderTask(ABC):
    """What one task does with a folder: run a batch of images, write an image's outputs, then the summary."""

    name: str = ""

    @abstractmethod
    def settings(self) -> dict[str, Any]:
        """What the outputs depend on (JSON-ready): a resume with other settings is refused."""

    @abstractmethod
    def run(self, images: list[Image.Image]) -> list[Any]:
        """One result per image (the task's ``*_batch`` function)."""

    @abstractmethod
    def save(self, out: Path, relative: str, image: Image.Image, result: Any) -> dict[str, Any]:
        """Write one image's own outputs (atomically) and return its journal record (JSON-ready)."""

    def finish(self, out: Path, records: dict[str, dict[str, Any]]) -> list[Path]:
        """Write the summary files from every finished image's record (sorted by path); returns their paths."""
        return []

    def outputs(self, relatives: list[str]) -> dict[str, str]:
        """Each image's own output file (relative to OUT), to refuse two images writing one file."""
        return {}

    @property
    def device(self) -> Any:
        """Where the model runs (the precision's autocast is taken there)."""
        return self.bundle.device   # type: ignore[attr-defined]


@dataclass
class FolderJob:
    """Where the images are, where the outputs go, and how they are read."""

    root: str | os.PathLike
    out: str | os.PathLike
    pattern: str | None = None
    recursive: bool = False
    batch_size: int = DEFAULT_BATCH
    progress: bool = True
    precision: str = "fp32"


@dataclass
class FolderSummary:
    """What a folder run did: images found, done before this run, done now, skipped; the files it wrote."""

    found: int
    resumed: int
    processed: int
    skips: SkipCounter
    written: list[Path] = field(default_factory=list)
    seconds: float = 0.0


def read_journal(out: Path) -> dict[str, dict[str, Any]]:
    """The finished images' records by relative path (a line cut short by a kill is ignored)."""
    path = out / JOURNAL
    records: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return records
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
            records[entry["file"]] = entry["record"]
        except (ValueError, KeyError, TypeError):
            continue
    return records


def _append(out: Path, relative: str, record: dict[str, Any]) -> None:
    line = (json.dumps({"file": relative, "record": record}) + "\n").encode()
    fd = os.open(out / JOURNAL, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def _check_manifest(out: Path, task: FolderTask, precision: str) -> None:
    """Write the run's settings, or refuse a resume whose settings differ from those already there."""
    wanted = {"task": task.name, "settings": {**task.settings(), "precision": precision}}
    wanted = json.loads(json.dumps(wanted))
    path = out / MANIFEST
    if path.is_file():
        try:
            found = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            found = None
        if found != wanted:
            changed = sorted(k for k in set((found or {}).get("settings", {})) | set(wanted["settings"])
                             if (found or {}).get("settings", {}).get(k) != wanted["settings"].get(k))
            what = f"task {found.get('task')}" if isinstance(found, dict) and found.get("task") != task.name else \
                f"other {', '.join(changed) or 'settings'}"
            raise ConfigError(f"--out {out}: holds a folder run with {what}; resume with the same settings or "
                              "choose another --out")
        return
    if (out / JOURNAL).exists():
        raise ConfigError(f"--out {out}: has {JOURNAL} but no {MANIFEST}; choose another --out")
    atomic_write_bytes(path, json.dumps(wanted, indent=1).encode())


def _pixel_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file's header, (0, 0) when unreadable (decoding says why later)."""
    try:
        with Image.open(path) as handle:
            return handle.size
    except Exception:   # noqa: BLE001 - any failure here is reported by open_image below
        return (0, 0)


def run_folder(job: FolderJob, task: FolderTask, on_image: Callable[[str], None] | None = None) -> FolderSummary:
    """Run ``task`` over the images of ``job.root`` not yet done in ``job.out``, then write its summary files.

    ``on_image(relative)`` is called after each image is journaled (progress hooks; raising stops the run, which
    a later call resumes)."""
    root, out = Path(job.root), Path(job.out)
    files = list_images(root, job.pattern, job.recursive)
    relatives = [p.relative_to(root).as_posix() for p in files]
    _check_collisions(task.outputs(relatives))
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: is a file, expected a folder")
    out.mkdir(parents=True, exist_ok=True)
    _check_manifest(out, task, job.precision)
    _clean_after_kill(out)
    done = read_journal(out)
    pending = sorted((rel for rel in relatives if rel not in done), key=lambda rel: (_pixel_size(root / rel), rel))
    skips = SkipCounter(log=SkipLog(out / SKIP_LOG))
    start = time.perf_counter()
    bar = _progress(len(relatives), len(relatives) - len(pending), job.progress)
    processed = 0
    try:
        for first in range(0, len(pending), job.batch_size):
            chunk = pending[first:first + job.batch_size]
            images, names = [], []
            for rel in chunk:
                try:
                    images.append(open_image(root / rel))
                    names.append(rel)
                except ImageLoadError as exc:
                    skips.add(exc)
            with inference_precision(task.device, job.precision):
                results = task.run(images) if images else []
            for rel, image, result in zip(names, images, results):
                record = task.save(out, rel, image, result)
                _append(out, rel, record)
                done[rel] = record
                processed += 1
                if on_image is not None:
                    on_image(rel)
            bar.update(len(chunk))
    finally:
        bar.close()
    written = task.finish(out, {rel: done[rel] for rel in sorted(done) if rel in set(relatives)})
    return FolderSummary(len(relatives), len(relatives) - len(pending), processed, skips, written,
                         time.perf_counter() - start)


def _clean_after_kill(out: Path) -> None:
    """What a killed run can leave: a journal line cut short (ended, so the next record starts its own line) and
    temporary files of atomic writes (``.NAME.*.tmp``, removed)."""
    journal = out / JOURNAL
    if journal.is_file() and journal.stat().st_size:
        with open(journal, "rb+") as handle:
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) != b"\n":
                handle.write(b"\n")
    for leftover in out.rglob(".*.tmp"):
        leftover.unlink(missing_ok=True)


def _check_collisions(outputs: dict[str, str]) -> None:
    seen: dict[str, str] = {}
    for source, target in outputs.items():
        if target in seen:
            raise ConfigError(f"{seen[target]} and {source} would both write {target}; rename one or narrow --glob")
        seen[target] = source


def _progress(total: int, initial: int, enabled: bool) -> Any:
    """A tqdm bar on stderr (images, rate, ETA) counting the images done before this run as done."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="img", disable=not enabled, dynamic_ncols=True,
                desc="images")
