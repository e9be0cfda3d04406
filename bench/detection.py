"""Open-vocabulary detection on the synthetic world (issue 20): F-ViT on (a) the shipped CLIP, (b) CLIPSelf on grid
cells, (c) CLIPSelf on the F-ViT RPN's proposals, and ViLD beside them -> AP50 novel / base / all and CPU time.

Every stage is a `clipdense` command, run as written in the table (so the table is its own recipe), timed, and
recorded in OUT/results.json after each stage (a re-run skips stages whose outputs exist). Prints the Markdown
table for docs/results/detection.md.

    python bench/detection.py --out runs/det/bench            # the measured recipe (CPU, about an hour)
    python bench/detection.py --out /tmp/det-smoke --smoke    # tiny sizes: checks the pipeline (a minute)
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from staged import main_for

from clipdense.demo.detection import WORLD_DETECTOR

MODEL = "--model tiny-vit-t8 --pretrained synthworld"
# the detector's world recipe (shared with `make demo`): 128 px input, small FPN / head widths for a CPU,
# anchors 4 x stride (the world's things are 14-86 px at 96 px), fewer RPN proposals
DETECTOR = " ".join(f"--objective-arg {key}={json.dumps(value, separators=(',', ':')).strip(chr(34))}"
                    for key, value in WORLD_DETECTOR.items())
SIZES = {"full": {"train": 2000, "val": 300, "det_steps": 800, "det_batch": 4, "det_lr": 2e-3, "distill_steps": 300,
                  "distill_batch": 16},
         "smoke": {"train": 16, "val": 8, "det_steps": 4, "det_batch": 4, "det_lr": 2e-3, "distill_steps": 2,
                   "distill_batch": 4}}


def stages(out: Path, sizes: dict[str, int]) -> list[tuple[str, str, Path]]:
    """(name, command, output that marks it done), in order."""
    world, s = out / "world", sizes
    det = (f"--steps {s['det_steps']} --batch-size {s['det_batch']} --lr {s['det_lr']} --warmup-steps "
           f"{max(1, s['det_steps'] // 16)} --checkpoint-every {s['det_steps']} --log-every 20 {DETECTOR}")
    distill = (f"--steps {s['distill_steps']} --batch-size {s['distill_batch']} --lr 1e-4 --warmup-steps "
               f"{max(1, s['distill_steps'] // 10)} --checkpoint-every {s['distill_steps']} --student-size 128 "
               f"--teacher-cache {out / 'teacher-cache'}")

    def detector(name: str, model: str, objective: str = "fvit", extra: str = "") -> list[tuple[str, str, Path]]:
        run = out / name
        return [(f"train {name}", f"clipdense train --objective {objective} {model} --data {world} --out {run} "
                                  f"{det}{extra}", run / "metrics.jsonl"),
                (f"eval {name}", f"clipdense eval {model} --data {world} --tasks detection --head {run} "
                                 f"--out {out / (name + '.json')} --no-progress", out / (name + ".json"))]

    grid, props = out / "clipself-grid", out / "clipself-proposals"
    return [
        ("world", f"clipdense data synth --out {world} --train {s['train']} --val {s['val']} "
                  "--classify-train-per-class 0 --classify-val-per-class 0", world / "world.json"),
        *detector("fvit-shipped", MODEL),
        ("proposals", f"clipdense detect --proposals --head {out / 'fvit-shipped'} --data {world} --json "
                      f"{out / 'proposals.json'} --top 20", out / "proposals.json"),
        ("clipself grid", f"clipdense distill {MODEL} --data {world} --out {grid} {distill}", grid / "metrics.jsonl"),
        *detector("fvit-clipself-grid", f"--model {grid}"),
        ("clipself proposals", f"clipdense distill {MODEL} --regions boxes --boxes {out / 'proposals.json'} "
                               f"--data {world / 'train' / 'images'} --out {props} {distill}",
         props / "metrics.jsonl"),
        *detector("fvit-clipself-proposals", f"--model {props}"),
        *detector("vild-shipped", MODEL, "vild", f" --objective-arg proposals={out / 'proposals.json'} "
                                                 f"--objective-arg teacher_cache={out / 'vild-cache'} "
                                                 "--objective-arg regions=10"),
    ]


def table(out: Path, record: dict) -> str:
    """Markdown rows: backbone, AP50 novel / base / all, AP, AR@100, train and eval seconds."""
    names = {"fvit-shipped": "F-ViT, (a) shipped CLIP", "fvit-clipself-grid": "F-ViT, (b) CLIPSelf grid cells",
             "fvit-clipself-proposals": "F-ViT, (c) CLIPSelf on the RPN's proposals",
             "vild-shipped": "ViLD, shipped CLIP"}
    lines = ["| detector, backbone | AP50 novel | AP50 base | AP50 all | AP all | AR@100 | train s | eval s |",
             "|---|---|---|---|---|---|---|---|"]
    for key, label in names.items():
        path = out / f"{key}.json"
        if not path.is_file():
            continue
        task = json.loads(path.read_text())["tasks"]["detection"]
        ap50 = task["AP50"]
        seconds = record.get("seconds", {})
        lines.append(f"| {label} | {ap50['novel']:.1f} | {ap50['base']:.1f} | {ap50['all']:.1f} | "
                     f"{task['AP']['all']:.1f} | {task['AR100']:.1f} | {seconds.get('train ' + key, 0):.0f} | "
                     f"{seconds.get('eval ' + key, 0):.0f} |")
    return "\n".join(lines)


def main() -> int:
    return main_for(__doc__, "runs/det/bench", SIZES, stages, lambda out, record, _sizes: table(out, record))


if __name__ == "__main__":
    sys.exit(main())
