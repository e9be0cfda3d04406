"""bench/detection.py end to end at smoke sizes: every stage's clipdense command runs and the table fills."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_detection_bench_smoke(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "detection.py"), "--out", str(tmp_path), "--smoke"],
                          capture_output=True, text=True, timeout=900, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| F-ViT") or line.startswith("| ViLD")]
    assert len(rows) == 4
    record = json.loads((tmp_path / "results.json").read_text())
    assert set(record["seconds"]) == set(record["commands"])
    proposals = json.loads((tmp_path / "proposals.json").read_text())
    assert proposals["annotations"] and (tmp_path / "clipself-proposals" / "metrics.jsonl").is_file()
