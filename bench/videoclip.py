"""VideoCLIP on the video world (issue 28): overlapping sub-clip positives, with and without retrieval-augmented
batches, on the shipped tiny CLIP (`tiny-vit-t8` / `synthworld`), three seeds a row; the same world, steps,
learning rates and head (seqTransf, 2 blocks, CLIP at 0.1 x lr) as bench/video.py's clip4clip rows.

Rows: ``plain`` (a batch of 16 random clips, each a random sub-clip of at least half its frames) and ``rab``
(retrieval-augmented: a pool of 32 random clips, the step keeps the first and its 15 nearest by video embedding,
so both train on 16 pairs a step). Measured: text->video R@1/R@5 on the val list and the order split, twin accuracy,
and ``negative_cosine`` (mean cosine between different clips of a step, from metrics.jsonl: how hard the negatives
are). Every stage is a `clipdense` command, timed and recorded in OUT/results.json (re-runs skip finished stages).

    OMP_NUM_THREADS=1 python bench/videoclip.py --out runs/video/videoclip           # the measured recipe (CPU)
    OMP_NUM_THREADS=1 python bench/videoclip.py --out /tmp/videoclip-smoke --smoke   # tiny sizes: the pipeline
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from staged import main_for
from video import MODEL, SIZES, TWINS, _cell, stages as video_stages

ROWS = {"plain": (1, "retrieval_batches=false"), "rab": (2, "retrieval_batches=true")}   # pool factor, option


def stages(out: Path, s: dict) -> list[tuple[str, str, Path]]:
    """The world (bench/video.py's), then per seed and row: train, eval val, eval order split."""
    msrvtt = f"msrvtt:root={out / 'world' / 'video' / 'msrvtt'},frames={s['frames']}"
    common = (f"--steps {s['steps']} --lr 1e-3 --warmup-steps {max(1, s['steps'] // 10)} --checkpoint-every "
              f"{s['steps']} --log-every {max(1, s['steps'] // 3)} --num-workers 0")
    found = video_stages(out, s)[:1]
    for seed in range(s["seeds"]):
        for row, (pool, option) in ROWS.items():
            run = out / f"{row}-s{seed}"
            found += [(f"train {run.name}", f"clipdense train --objective videoclip {MODEL} --data {msrvtt} --out "
                                           f"{run} {common} --seed {seed} --objective-arg coef_lr=0.1 "
                                           f"--objective-arg layers=2 --batch-size {pool * s['batch']} "
                                           f"--objective-arg {option}", run / "metrics.jsonl"),
                      (f"eval {run.name} val", f"clipdense eval {MODEL} --data {msrvtt} --tasks video-retrieval "
                                               f"--head {run} --out {run / 'val.json'}", run / "val.json"),
                      (f"eval {run.name} order", f"clipdense eval {MODEL} --data {msrvtt},test=order_test.csv "
                                                 f"--tasks video-retrieval{TWINS} --head {run} --out "
                                                 f"{run / 'order.json'}", run / "order.json")]
    return found


def table(out: Path, record: dict, sizes: dict) -> str:
    """One line per row, mean ± sd over the seeds that finished."""
    lines = ["| videoclip | seeds | train s (each) | val t→v R@1 | val R@5 | order t→v R@1 | twin t→v | "
             "negative cosine |", "|---|---|---|---|---|---|---|---|"]
    nan = float("nan")
    for row in ROWS:
        runs = [r for r in (out / f"{row}-s{s}" for s in range(sizes["seeds"])) if (r / "order.json").is_file()]
        if not runs:
            continue
        task = [{n: json.loads((r / f"{n}.json").read_text())["tasks"]["video-retrieval"] for n in ("val", "order")}
                for r in runs]
        logged = [[json.loads(x)["negative_cosine"] for x in (r / "metrics.jsonl").read_text().splitlines()]
                  for r in runs]
        train_s = statistics.mean(record["seconds"].get(f"train {r.name}", float("nan")) for r in runs)
        lines.append(f"| {row} | {len(runs)} | {train_s:.0f} | "
                     f"{_cell([t['val']['text_to_video']['R@1'] for t in task])} | "
                     f"{_cell([t['val']['text_to_video']['R@5'] for t in task])} | "
                     f"{_cell([t['order']['text_to_video']['R@1'] for t in task])} | "
                     f"{_cell([t['order'].get('twin_accuracy', {}).get('text_to_video', nan) for t in task])}"
                     f" | {_cell([statistics.mean(x) for x in logged], 2)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main_for(__doc__, "runs/video/videoclip", SIZES, stages, table))
