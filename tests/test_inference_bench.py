"""bench/inference.py: its re-implementation of the official slide inference (mmseg's grids, one forward per
window, text recomputed per image) equals the library's batched-window path to 1e-4 on the tiny model, at sizes
where the last window is flush with the border; the script's smoke run writes its rows (slow)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

import inference as bench  # noqa: E402


@pytest.mark.parametrize("mode", ["maskclip", "sclip", "naclip"])
@pytest.mark.parametrize("size", [(64, 64), (80, 100)])
def test_official_slide_path_equals_ours(tiny_bundle, mode, size):
    torch.manual_seed(0)
    image = torch.randn(1, 3, *size)
    diff = bench.check_parity(tiny_bundle, image, mode, 32, 16, "world", ["red circle", "blue square", "star"])
    assert diff <= 1e-4


def test_official_grids_are_mmseg_slide_inference(tiny_bundle):
    """mmseg: h_grids = max(H - crop + stride - 1, 0) // stride + 1 windows, the last flush with the border; counted
    here through the forwards the official path makes."""
    calls = []
    model = tiny_bundle.model
    original = bench.encode_dense
    bench.encode_dense = lambda m, crop, mode: calls.append(tuple(crop.shape[-2:])) or original(m, crop, mode)
    try:
        bench.official_slide_cosines(model, torch.randn(1, 3, 80, 100), torch.randn(3, 64), "maskclip", 32, 16)
    finally:
        bench.encode_dense = original
    assert len(calls) == 4 * 6 and set(calls) == {(32, 32)}   # (80-32+15)//16+1 = 4, (100-32+15)//16+1 = 6


@pytest.mark.slow
def test_inference_bench_smoke(tmp_path):
    out = tmp_path / "inference.json"
    proc = subprocess.run([sys.executable, str(BENCH / "inference.py"), "--smoke", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    paths = {row["path"] for row in rows}
    assert {"official (one forward per window)", "ours fp32 (windows batched)", "ours bf16 autocast",
            "onnxruntime (windows batched)", "ours (on-disk cache)"} <= paths
    assert all(row["seconds_per_image"] > 0 for row in rows)
    assert all(row["parity_max_abs_diff"] <= 1e-4 for row in rows if "parity_max_abs_diff" in row)
    assert "| image | maskclip | official (one forward per window) |" in proc.stdout
