"""bench/audio.py: its table (mean ± sd over seeds, by hand) from recorded results, and its --smoke run end to end."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    sys.path.insert(0, str(ROOT / "bench"))
    spec = importlib.util.spec_from_file_location("bench_audio", ROOT / "bench" / "audio.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write(run: Path, zero: float, a2i: float) -> None:
    run.mkdir(parents=True)
    (run / "zeroshot.json").write_text(json.dumps({"tasks": {"audio-zeroshot": {"top1_mean_over_folds": zero}}}))
    recall = {"1": a2i, "5": a2i, "10": a2i}
    (run / "retrieval.json").write_text(json.dumps({"tasks": {"audio-retrieval": {
        "audio_to_image": recall, "image_to_audio": recall, "audio_to_text": recall}}}))


def test_table_reports_mean_and_sd_over_seeds(tmp_path: Path) -> None:
    bench = _bench()
    sizes = dict(bench.SIZES["full"], seeds=2)
    for seed, zero in enumerate((0.5, 0.7)):
        _write(tmp_path / bench.run_name("partial, FBSP", seed), zero, 0.2)
    record = {"seconds": {f"train {bench.run_name('partial, FBSP', s)}": t for s, t in ((0, 100.0), (1, 120.0))}}
    rows = bench.table(tmp_path, record, sizes).splitlines()
    assert len(rows) == 3   # header, rule, the one row with results
    cells = [c.strip() for c in rows[2].split("|")[1:-1]]
    # mean 60.0, sample sd of (50, 70) = 14.1; train seconds the mean 110
    assert cells[:5] == ["partial, FBSP", "2", "110", "60.0 ± 14.1", "20.0 ± 0.0"]


@pytest.mark.slow
def test_audio_bench_smoke(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "audio.py"), "--smoke", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=900, env=env, cwd=ROOT / "bench")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| partial") or line.startswith("| full")]
    assert len(rows) == 4
    record = json.loads((tmp_path / "results.json").read_text())
    assert set(record["seconds"]) == set(record["commands"]) and len(record["commands"]) == 1 + 4 * 3
