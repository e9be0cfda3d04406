"""bench/groupvit.py runs end to end in its --smoke mode: every stage is a clipdense command, the table has the
GroupViT row (scored by its grouping), CLIP's vanilla and best training-free rows and CLIP + CLIPSelf."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_groupvit_bench_smoke(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "groupvit.py"), "--smoke", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| tiny")]
    assert [r.split(" | ")[0] for r in rows] == ["| tiny GroupViT (its grouping)", "| tiny CLIP (vanilla tokens)",
                                                 rows[2].split(" | ")[0], "| tiny CLIP + CLIPSelf (maskclip)"]
    assert rows[2].startswith("| tiny CLIP (best training-free mode: ")
    assert set(json.loads((tmp_path / "groupvit.json").read_text())["tasks"]["segmentation"]) == {"grouping"}
    record = json.loads((tmp_path / "results.json").read_text())
    assert set(record["seconds"]) == set(record["commands"]) and len(record["commands"]) == 7
