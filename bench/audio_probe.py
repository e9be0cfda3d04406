"""Supervised fold accuracy of AudioCLIP towers (issue 29): ESC-50's protocol, a linear probe on the frozen audio
tower trained on 4 folds and tested on the 5th, averaged over the folds (`clipdense eval --tasks audio-linear-probe`),
beside the zero-shot accuracy of the same tower on the same clips.

Runs on the towers bench/audio.py trained (its OUT: 4 rows x 3 seeds, the 20-class world), and on the shipped tower
with its card world (68 classes, seed 1, written here if missing). Prints the Markdown tables for
docs/results/audio.md; a re-run reuses the JSON files it wrote.

    OMP_NUM_THREADS=1 python bench/audio.py --out /tmp/p29bench         # first: the trained towers
    OMP_NUM_THREADS=1 python bench/audio_probe.py --out /tmp/p29bench
"""
from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

from audio import ROWS, SIZES, run_name, runs

MODEL = "--model tiny-vit-t8 --pretrained synthworld --device cpu"
CARD = ("clipdense data synth --out {world} --train 0 --val 100 --image-size 64 --seed 1 "
        "--classify-train-per-class 0 --classify-val-per-class 0 --audio --audio-per-class 5")


def _eval(esc50: Path, head: str, tasks: str, out: Path) -> dict:
    """`clipdense eval` once (skipped when ``out`` exists); the tasks' results."""
    if not out.is_file():
        command = (f"clipdense eval {MODEL} --data esc50:root={esc50} --tasks {tasks} {head} --templates world "
                   f"--out {out}")
        start = time.perf_counter()
        subprocess.run(shlex.split(command), check=True, stdout=subprocess.DEVNULL)
        print(f"{time.perf_counter() - start:6.1f} s  {command}", file=sys.stderr)
    return json.loads(out.read_text())["tasks"]


def _cell(values: list[float]) -> str:
    pct = [100 * v for v in values]
    return f"{pct[0]:.1f}" if len(pct) == 1 else f"{statistics.mean(pct):.1f} ± {statistics.stdev(pct):.1f}"


def bench_rows(out: Path) -> list[str]:
    """One row per bench/audio.py row: probe and zero-shot, mean ± sd over the seeds whose run exists."""
    lines = ["| audio tower (20 classes, 200 clips) | seeds | linear probe, mean of 5 folds | zero-shot, mean of 5 folds |",
             "|---|---|---|---|"]
    esc50 = out / "world" / "audio" / "esc50"
    for row in ROWS:
        done = [out / run_name(r, s) for r, s in runs(SIZES["full"]) if r == row]
        done = [run for run in done if (run / "metrics.jsonl").is_file()]
        if not done:
            continue
        scores = [_eval(esc50, f"--head {run}", "audio-linear-probe,audio-zeroshot", run / "probe.json")
                  for run in done]
        probe = [s["audio-linear-probe"]["top1_mean_over_folds"] for s in scores]
        zero = [s["audio-zeroshot"]["top1_mean_over_folds"] for s in scores]
        lines.append(f"| {row} | {len(done)} | {_cell(probe)} | {_cell(zero)} |")
    return lines


def shipped_row(out: Path) -> list[str]:
    """The shipped tower on its card world (no --head: the tower shipped for the weights)."""
    world = out / "card-world"
    if not (world / "audio" / "esc50" / "meta" / "esc50.csv").is_file():
        subprocess.run(shlex.split(CARD.format(world=world)), check=True, stdout=subprocess.DEVNULL)
    scores = _eval(world / "audio" / "esc50", "", "audio-linear-probe,audio-zeroshot", out / "shipped-probe.json")
    probe, zero = scores["audio-linear-probe"], scores["audio-zeroshot"]
    folds = ", ".join(f"{100 * v:.0f}" for v in probe["per_fold"].values())
    return ["| shipped tower, card world (68 classes, 340 clips) | linear probe, mean of 5 folds | per fold | "
            "zero-shot |", "|---|---|---|---|",
            f"| partial, FBSP, 600 steps | {100 * probe['top1_mean_over_folds']:.1f} | {folds} | "
            f"{100 * zero['top1_mean_over_folds']:.1f} |"]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/audio/bench"))
    args = parser.parse_args()
    print("\n".join(shipped_row(args.out)) + "\n\n" + "\n".join(bench_rows(args.out)))
