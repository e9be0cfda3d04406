"""Metrics of a run: RUN/metrics.jsonl (+ metrics.csv), TensorBoard when installed, a tqdm bar."""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..config import atomic_write_bytes


def read_records(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl; a line a killed run left half-written (or any unparsable one) is dropped:
    the checkpoint, not the log, is what a resume continues from."""
    records = []
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step", 0), (int, float)):
            records.append(record)
    return records


class MetricsLog:
    """Appends one JSON line per record (constant cost per log); the CSV copy is refreshed every
    ``CSV_EVERY`` records and at close.

    On resume, records after the resumed step are dropped, so the files read as one clean run.
    """

    CSV_EVERY = 50

    def __init__(self, run_dir: str | os.PathLike, resume_step: int | None = None, enabled: bool = True) -> None:
        self.run_dir, self.enabled = Path(run_dir), enabled
        self.records: list[dict[str, Any]] = []
        path = self.run_dir / "metrics.jsonl"
        if enabled and resume_step is not None and path.is_file():
            self.records = [r for r in read_records(path) if r.get("step", 0) <= resume_step]
        if enabled:
            text = "".join(json.dumps(r) + "\n" for r in self.records)
            atomic_write_bytes(path, text.encode())
        self._tb = self._tensorboard() if enabled else None

    def _tensorboard(self) -> Any:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional: `pip install clipdense[tb]`
            return None
        return SummaryWriter(str(self.run_dir / "tensorboard"))

    def log(self, record: dict[str, Any]) -> None:
        """Append one record (must contain 'step') and flush all files."""
        if not self.enabled:
            return
        self.records.append(record)
        with open(self.run_dir / "metrics.jsonl", "a") as handle:
            handle.write(json.dumps(record) + "\n")
        if len(self.records) % self.CSV_EVERY == 1:
            self._write_csv()
        if self._tb is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    self._tb.add_scalar(key, value, record["step"])
            self._tb.flush()

    def _csv(self) -> str:
        keys: list[str] = []
        for record in self.records:
            keys.extend(k for k in record if k not in keys)
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=keys)
        writer.writeheader()
        writer.writerows(self.records)
        return out.getvalue()

    def _write_csv(self) -> None:
        atomic_write_bytes(self.run_dir / "metrics.csv", self._csv().encode())

    def close(self) -> None:
        if self.enabled and self.records:
            self._write_csv()
        if self._tb is not None:
            self._tb.close()


def progress_bar(total: int, initial: int, enabled: bool) -> tqdm:
    """Step progress with ETA; the engine sets loss / lr / images per second as postfix."""
    return tqdm(total=total, initial=initial, disable=not enabled, unit="step", dynamic_ncols=True,
                desc="train", mininterval=1.0)
