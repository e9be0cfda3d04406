"""OV-LVIS on the long-tailed world (issue 27): F-ViT with its mask branch on (a) the shipped CLIP, (b) CLIPSelf on
grid cells, (c) CLIPSelf on the F-ViT RPN's proposals, and ViLD (boxes only) beside them -> LVIS's federated box and
mask AP, APr / APc / APf (the lvis API), rare classes never trained on.

Every stage is a `clipdense` command, run as written in the table, timed, and recorded in OUT/results.json after
each stage (a re-run skips stages whose outputs exist). Prints the Markdown table for docs/results/ov-lvis.md.

    python bench/ov_lvis.py --out runs/lvis/bench            # the measured recipe (2-core CPU, 45 min loaded)
    python bench/ov_lvis.py --out /tmp/lvis-smoke --smoke    # tiny sizes: checks the pipeline (a few minutes)
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from staged import main_for

from clipdense.demo.detection import WORLD_DETECTOR

MODEL = "--model tiny-vit-t8 --pretrained synthworld"
# the detection bench's world recipe (128 px input, small widths for a CPU), plus F-ViT's mask branch
DETECTOR = " ".join(f"--objective-arg {key}={json.dumps(value, separators=(',', ':')).strip(chr(34))}"
                    for key, value in WORLD_DETECTOR.items())
SIZES = {"full": {"scenes": 600, "det_steps": 500, "det_batch": 4, "det_lr": 2e-3, "distill_steps": 300,
                  "distill_batch": 16},
         "smoke": {"scenes": 200, "det_steps": 4, "det_batch": 2, "det_lr": 2e-3, "distill_steps": 2,
                   "distill_batch": 4}}
NAMES = {"fvit-shipped": "F-ViT + masks, (a) shipped CLIP", "fvit-clipself-grid": "F-ViT + masks, (b) CLIPSelf grid",
         "fvit-clipself-proposals": "F-ViT + masks, (c) CLIPSelf on the RPN's proposals",
         "vild-shipped": "ViLD (boxes), shipped CLIP"}


def stages(out: Path, sizes: dict[str, int]) -> list[tuple[str, str, Path]]:
    """(name, command, output that marks it done), in order."""
    world, s = out / "world", sizes
    train, val, images = world / "lvis" / "train.yaml", world / "lvis" / "val.yaml", world / "lvis" / "images"
    det = (f"--steps {s['det_steps']} --batch-size {s['det_batch']} --lr {s['det_lr']} --warmup-steps "
           f"{max(1, s['det_steps'] // 16)} --checkpoint-every {s['det_steps']} --log-every 20 {DETECTOR}")
    distill = (f"--steps {s['distill_steps']} --batch-size {s['distill_batch']} --lr 1e-4 --warmup-steps "
               f"{max(1, s['distill_steps'] // 10)} --checkpoint-every {s['distill_steps']} --student-size 128 "
               f"--teacher-cache {out / 'teacher-cache'}")

    def detector(name: str, model: str, objective: str = "fvit", extra: str = "") -> list[tuple[str, str, Path]]:
        run = out / name
        masks = " --objective-arg mask_head=true" if objective == "fvit" else ""
        return [(f"train {name}", f"clipdense train --objective {objective} {model} --data {train} --out {run} "
                                  f"{det}{masks}{extra}", run / "metrics.jsonl"),
                (f"eval {name}", f"clipdense eval {model} --data {val} --tasks lvis --head {run} "
                                 f"--out {out / (name + '.json')} --no-progress", out / (name + ".json"))]

    grid, props = out / "clipself-grid", out / "clipself-proposals"
    return [
        ("world", f"clipdense data synth --out {world} --train 2 --val 1 --classify-train-per-class 0 "
                  f"--classify-val-per-class 0 --lvis --lvis-scenes {s['scenes']}", world / "lvis" / "README.md"),
        *detector("fvit-shipped", MODEL),
        ("proposals", f"clipdense detect --proposals --head {out / 'fvit-shipped'} --data {train} --json "
                      f"{out / 'proposals.json'} --top 20", out / "proposals.json"),
        ("clipself grid", f"clipdense distill {MODEL} --data {train} --out {grid} {distill}", grid / "metrics.jsonl"),
        *detector("fvit-clipself-grid", f"--model {grid}"),
        ("clipself proposals", f"clipdense distill {MODEL} --regions boxes --boxes {out / 'proposals.json'} "
                               f"--data {images} --out {props} {distill}", props / "metrics.jsonl"),
        *detector("fvit-clipself-proposals", f"--model {props}"),
        *detector("vild-shipped", MODEL, "vild", f" --objective-arg proposals={out / 'proposals.json'} "
                                                 f"--objective-arg teacher_cache={out / 'vild-cache'} "
                                                 "--objective-arg regions=10"),
    ]


def _cells(scores: dict | None) -> str:
    if scores is None:
        return "– | – | – | –"
    values = [scores[k] for k in ("AP", "APr", "APc", "APf")]   # NaN (no ground truth) is null in the JSON
    return " | ".join("–" if v is None or math.isnan(v) else f"{v:.1f}" for v in values)


def table(out: Path, record: dict) -> str:
    """Markdown rows: detector, box AP / APr / APc / APf, mask AP / APr / APc / APf, train and eval seconds."""
    lines = ["| detector, backbone | box AP | box APr | box APc | box APf | mask AP | mask APr | mask APc | mask APf "
             "| train s | eval s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for key, label in NAMES.items():
        path = out / f"{key}.json"
        if not path.is_file():
            continue
        task = json.loads(path.read_text())["tasks"]["lvis"]
        seconds = record.get("seconds", {})
        lines.append(f"| {label} | {_cells(task['box'])} | {_cells(task['mask'])} | "
                     f"{seconds.get('train ' + key, 0):.0f} | {seconds.get('eval ' + key, 0):.0f} |")
    return "\n".join(lines)


def main() -> int:
    return main_for(__doc__, "runs/lvis/bench", SIZES, stages, lambda out, record, _sizes: table(out, record))


if __name__ == "__main__":
    sys.exit(main())
