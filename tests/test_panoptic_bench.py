"""bench/panoptic.py (issue 27): its stages are the recipe the docs print (one training per seed and the longer
run, each scored with the head, the CLIP and the ensemble, with the plain and the CLIPSelf CLIP, on both worlds),
its table is the seeds' mean ± std of the evaluations' numbers, and the --smoke mode runs end to end (slow)."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location("bench_panoptic", ROOT / "bench" / "panoptic.py")
bench = importlib.util.module_from_spec(SPEC)
sys.path.insert(0, str(ROOT / "bench"))           # for its `from staged import main_for`
try:
    SPEC.loader.exec_module(bench)
finally:
    sys.path.remove(str(ROOT / "bench"))


def test_stages_train_each_seed_and_score_every_row() -> None:
    found = bench.stages(Path("/o"), bench.SIZES["full"])
    trains = [command for name, command, _ in found if name.startswith("train")]
    assert len(trains) == 4 and "--steps 2000" in trains[-1] and all("--seed 0" in trains[i] for i in (0, 3))
    evals = [command for name, command, _ in found if name.startswith("eval")]
    assert len(evals) == 4 * 2 * 5            # runs x worlds x (head, CLIP, ensemble, CLIPSelf CLIP, its ensemble)
    ensemble = [c for c in evals if "maskgen-1 " in c and "/o/cross " in c and "alpha=0.4" in c]
    assert len(ensemble) == 2 and sum("panoptic.clip=/o/clipself" in c for c in ensemble) == 1
    assert all("beta=0.8" in c for c in ensemble)


def _write(out: Path, tag: str, pq: float) -> None:
    keys = {k: pq for k in bench.KEYS}
    (out / f"{tag}-base-clip-ensemble.json").write_text(json.dumps({"tasks": {"panoptic": {**keys, "pq_st": None}}}))


def test_table_is_the_mean_and_std_over_seeds(tmp_path: Path) -> None:
    for tag, pq in (("0", 10.0), ("1", 20.0), ("2", 30.0), ("long", 40.0)):
        _write(tmp_path, tag, pq)
    record = {"seconds": {"train seed 0": 10, "train seed 1": 20, "train seed 2": 30, "train seed long": 99}}
    text = bench.table(tmp_path, record, bench.SIZES["full"])
    rows = [line for line in text.splitlines() if line.startswith("| base | clip | ensemble")]
    assert rows[0].split(" | ")[3:6] == ["20.0 ± 10.0", "20.0 ± 10.0", "–"]    # stdev of 10, 20, 30; null: –
    assert rows[1].split(" | ")[3] == "40.0"
    assert "training 20 s per seed" in text and "training 99 s" in text


@pytest.mark.slow
def test_panoptic_bench_smoke(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "panoptic.py"), "--smoke", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=900, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith(("| base", "| cross"))]
    assert len(rows) == 10
    result = json.loads((tmp_path / "0-cross-clipself-ensemble.json").read_text())["tasks"]["panoptic"]
    assert result["protocol"] == "panopticapi" and result["alpha"] == 0.4 and result["beta"] == 0.8
