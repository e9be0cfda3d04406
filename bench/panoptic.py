"""Open-vocabulary panoptic segmentation on the synthetic world (issue 27, ODISE's role): the Mask2Former-style mask
generator (`train --objective mask2former`) on the shipped tiny CLIP's own block pyramid, its masks classified by
the head, by mask pooling on a CLIP, or by their geometric ensemble (alpha 0.4 seen, beta 0.8 unseen), with the
plain CLIP or a CLIPSelf-refined copy as the pooled CLIP (CLIPSelf's ODISE row).

Protocol (COCO panoptic -> ADE20K in ODISE, on worlds): the generator trains on the train scenes of
configs/segheads-base-world.yaml (its 12 novel colour-shape pairs never appear there; 31 seen classes incl. 5 stuff)
with three seeds; it is evaluated on that world's val scenes (PQ seen / unseen) and on configs/segheads-cross-world.yaml
(another seed, 75 classes, 44 never trained on); one more run of seed 0 trains 4x longer. PQ is counted as COCO's
panopticapi does (the evaluation's default protocol). Every stage is a `clipdense` command, timed and recorded in
OUT/results.json after each stage (a re-run skips stages whose outputs exist); prints the Markdown table.

    OMP_NUM_THREADS=1 python bench/panoptic.py --out runs/panoptic/bench          # the measured recipe (CPU)
    OMP_NUM_THREADS=1 python bench/panoptic.py --out /tmp/pan-smoke --smoke       # tiny sizes: the pipeline
"""
from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path

from staged import main_for

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
SIZES = {"full": {"world": "--train 600 --val 100", "cross": "--val 100", "steps": 500, "distill_steps": 300,
                  "seeds": [0, 1, 2], "long_steps": 2000},
         "smoke": {"world": "--train 16 --val 3", "cross": "--val 3", "steps": 2, "distill_steps": 2, "seeds": [0]}}
#: the generator's CPU recipe: 64 px, 64 channels, 32 queries, 6 decoder layers (two rounds over three levels)
HEAD_ARGS = "templates=world hidden_dim=64 mask_dim=64 queries=32 decoder_layers=6 heads=4 ffn_dim=256 points=1024"
#: score rows: (name, alpha, beta)
SCORES = [("head alone", 0.0, 0.0), ("CLIP alone", 1.0, 1.0), ("ensemble", 0.4, 0.8)]
MODEL = "--model tiny-vit-t8 --pretrained synthworld"
EVAL = "--tasks panoptic --no-progress --device cpu"


def _runs(s: dict) -> list[tuple[str, int, int]]:
    """(tag, seed, steps) of every generator run: one per seed, and one longer run where the sizes ask for it."""
    found = [(str(seed), seed, s["steps"]) for seed in s["seeds"]]
    return found + ([("long", 0, s["long_steps"])] if s.get("long_steps") else [])


def _run_stages(out: Path, tag: str, seed: int, steps: int) -> list[tuple[str, str, Path]]:
    """One generator's training and its evaluations (both worlds x pooled CLIP x score)."""
    run = out / f"maskgen-{tag}"
    args = " ".join(f"--objective-arg {a}" for a in HEAD_ARGS.split())
    found = [(f"train seed {tag}", f"clipdense train --objective mask2former {MODEL} --data {out / 'base'} --out {run} "
                                   f"--steps {steps} --batch-size 8 --lr 1e-3 --weight-decay 0.05 "
                                   f"--checkpoint-every {steps} --log-every 50 --seed {seed} --device cpu {args}",
              run / "metrics.jsonl")]
    for world in ("base", "cross"):
        for pooled in ("clip", "clipself"):
            for name, alpha, beta in SCORES:
                if pooled == "clipself" and alpha == beta == 0:
                    continue     # the head's own score never reads the pooled CLIP
                result = out / f"{tag}-{world}-{pooled}-{name.replace(' ', '_')}.json"
                extra = f" --task-arg panoptic.clip={out / 'clipself'}" if pooled == "clipself" else ""
                found.append((f"eval {tag} {world} {pooled} {name}",
                              f"clipdense eval {MODEL} --data {out / world} {EVAL} --head {run} --out {result} "
                              f"--task-arg panoptic.alpha={alpha} --task-arg panoptic.beta={beta}{extra}", result))
    return found


def stages(out: Path, s: dict) -> list[tuple[str, str, Path]]:
    """(name, command, output that marks it done), in order."""
    base, cross = out / "base", out / "cross"
    found = [("world base", f"clipdense data synth --config {CONFIGS / 'segheads-base-world.yaml'} --out {base} "
                            f"{s['world']}", base / "world.json"),
             ("world cross", f"clipdense data synth --config {CONFIGS / 'segheads-cross-world.yaml'} --out {cross} "
                             f"{s['cross']}", cross / "world.json"),
             ("distill clipself", f"clipdense distill --method clipself {MODEL} --data {base} --out {out / 'clipself'} "
                                  f"--steps {s['distill_steps']} --batch-size 16 --lr 1e-4 --student-size 64 "
                                  f"--global-guard 1.0 --checkpoint-every {s['distill_steps']} --device cpu",
                                  out / "clipself" / "metrics.jsonl")]
    for tag, seed, steps in _runs(s):
        found += _run_stages(out, tag, seed, steps)
    return found


KEYS = ["pq", "pq_th", "pq_st", "pq_seen", "pq_unseen", "sq", "rq", "miou", "mask_ap"]


def _cell(values: list[float]) -> str:
    values = [v for v in values if v is not None and v == v]     # NaN is written as null
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def _rows(out: Path, tags: list[str]) -> list[str]:
    """One row per world x pooled CLIP x score over the runs ``tags``: mean ± std where several."""
    lines = []
    for world in ("base", "cross"):
        for pooled in ("clip", "clipself"):
            for name, alpha, beta in SCORES:
                if pooled == "clipself" and alpha == beta == 0:
                    continue
                found = [out / f"{tag}-{world}-{pooled}-{name.replace(' ', '_')}.json" for tag in tags]
                results = [json.loads(p.read_text())["tasks"]["panoptic"] for p in found if p.is_file()]
                if results:
                    cells = " | ".join(_cell([r[k] for r in results]) for k in KEYS)
                    lines.append(f"| {world} | {'—' if alpha == beta == 0 else pooled} | {name} | {cells} |")
    return lines


def table(out: Path, record: dict, sizes: dict) -> str:
    """The seeds' table (mean ± std), then the longer run's."""
    header = ["| world | pooled CLIP | score | PQ | PQ things | PQ stuff | PQ seen | PQ unseen | SQ | RQ | mIoU | "
              "mask AP |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    seconds = [record.get("seconds", {}).get(f"train seed {s}", math.nan) for s in sizes["seeds"]]
    lines = [f"{sizes['steps']} steps, {len(sizes['seeds'])} seeds; training {statistics.mean(seconds):.0f} s per "
             "seed.", "", *header, *_rows(out, [str(s) for s in sizes["seeds"]])]
    if sizes.get("long_steps"):
        seconds = record.get("seconds", {}).get("train seed long", math.nan)
        lines += ["", f"{sizes['long_steps']} steps, seed 0; training {seconds:.0f} s.", "", *header,
                  *_rows(out, ["long"])]
    return "\n".join(lines)


def main() -> int:
    return main_for(__doc__, "runs/panoptic/bench", SIZES, stages, table)


if __name__ == "__main__":
    sys.exit(main())
