"""The video objectives under DDP: two gloo ranks of `clipdense train` (torchrun) finish with a finite loss in
each CLIP regime; tightTransf, whose cross encoder leaves the tuned CLIP's logit scale without gradient, included
(it failed with DDP's unused-parameter error before ``ddp_find_unused_parameters`` was set for it)."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clipdense.cli.main import main


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("video-ddp") / "w"
    assert main(["data", "synth", "--out", str(out), "--train", "2", "--val", "1", "--image-size", "32",
                 "--classify-train-per-class", "0", "--classify-val-per-class", "0", "--video",
                 "--video-clips", "16"]) == 0
    return out


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.parametrize("objective,layout,args", [
    ("clip4clip", "msrvtt", ["head=seqTransf", "clip=tune"]),
    ("clip4clip", "msrvtt", ["head=tightTransf", "clip=tune"]),
    ("actionclip", "kinetics", ["clip=frozen"]),
    ("videoclip", "msrvtt", ["retrieval_batches=true"]),
])
def test_video_objectives_train_on_two_ranks(world: Path, tmp_path: Path, objective: str, layout: str,
                                             args: list[str]) -> None:
    out = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "clipdense.cli.main",
               "train", "--objective", objective, "--data", f"{layout}:root={world / 'video' / layout},frames=4",
               "--out", str(out), "--model", "tiny-vit-t8", "--pretrained", "synthworld", "--device", "cpu",
               "--steps", "2", "--batch-size", "4", "--num-workers", "0", "--checkpoint-every", "2",
               "--objective-arg", "layers=1"]
    for arg in args:
        command += ["--objective-arg", arg]
    done = subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 2 and all(math.isfinite(r["loss"]) for r in rows)
