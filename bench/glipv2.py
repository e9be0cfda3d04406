"""GLIPv2's instance masks and the CLIPSelf-refined backbone under a GLIP head, on the grounding world (issue 26).

Same world, head recipe and schedule as bench/grounding.py (so its rows compare with that page's table):

- ``glipv2-masks``: objective glipv2 (inter-image loss, weight 1) with the mask branch (``mask_head=true``) trained on
  the world's grounding data, whose boxes carry their instance masks; scored on phrase grounding (R@k) and, as a
  detector of the world's thing classes it never saw as classes (zero-shot transfer), on box and mask AP with
  COCOeval (``eval --tasks instances``).
- ``glip-clipself``: GLIP with deep fusion on the shipped CLIP after CLIPSelf (the recipe of docs/results/groupvit.md:
  200 steps x 16, boxes + guard, whole tower, students at 96 px), beside ``glip-fusion`` on the plain CLIP - both
  over three seeds, since the difference is small.

    python bench/glipv2.py --out runs/grounding/glipv2          # the measured recipe (CPU)
    python bench/glipv2.py --out /tmp/glipv2-smoke --smoke      # tiny sizes: checks the pipeline
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from grounding import MODEL, SIZES, _cell, _train_args
from staged import main_for

CLIPSELF = ("--steps 200 --batch-size 16 --lr 3e-4 --regions boxes --dense-mode maskclip --student-size 96 "
            "--global-guard 1.0 --train tower --no-keep-aspect --device cpu")
#: row -> (label, objective + its extra args, backbone: "plain" or "clipself")
ROWS = {
    "glipv2-masks": ("GLIPv2 + mask head", "glipv2 --objective-arg fusion=true --objective-arg inter_weight=1.0 "
                                            "--objective-arg mask_head=true", "plain"),
    "glip-fusion": ("GLIP, deep fusion, plain CLIP", "glip --objective-arg fusion=true", "plain"),
    "glip-clipself": ("GLIP, deep fusion, CLIPSelf-refined CLIP", "glip --objective-arg fusion=true", "clipself"),
}
SEEDS = {"glipv2-masks": 1, "glip-fusion": 3, "glip-clipself": 3}


def stages(out: Path, sizes: dict[str, int]) -> list[tuple[str, str, Path]]:
    """(name, command, output that marks it done): world, CLIPSelf, then seed 0 of every row, then seeds 1-2."""
    world, clipself = out / "world", out / "clipself"
    val = f"modulated-coco:images={world / 'val' / 'images'},annotations={world / 'grounding' / 'mdetr_val.json'}"
    found = [("world", f"clipdense data synth --out {world} --train {sizes['train']} --val {sizes['val']} "
                       "--classify-train-per-class 0 --classify-val-per-class 0 --grounding",
              world / "grounding" / "mdetr_val.json"),
             ("clipself", f"clipdense distill --method clipself {MODEL} --data {world} --out {clipself} {CLIPSELF}",
              clipself / "metrics.jsonl")]
    seeds = 1 if sizes["seeds"] < 3 else 3
    for seed in range(seeds):
        for name, (_, objective, backbone) in ROWS.items():
            if seed >= SEEDS[name]:
                continue
            run = out / (name if seed == 0 else f"{name}-s{seed}")
            model = f"--model {clipself}" if backbone == "clipself" else MODEL
            found += [(f"train {run.name}", f"clipdense train --objective {objective} {model} --data {world} "
                                            f"--out {run} {_train_args(sizes)} --seed {seed}", run / "metrics.jsonl"),
                      (f"eval {run.name}", f"clipdense eval {model} --data {val} --tasks grounding --head {run} "
                                           f"--device cpu --out {out / (run.name + '.json')} --no-progress",
                       out / (run.name + ".json"))]
            if name == "glipv2-masks":
                found.append((f"instances {run.name}", f"clipdense eval {model} --data {world} --tasks instances "
                                                       f"--head {run} --device cpu --out "
                                                       f"{out / (run.name + '-instances.json')} --no-progress",
                              out / (run.name + "-instances.json")))
    return found


def table(out: Path, record: dict, sizes: dict[str, int]) -> str:
    """Grounding R@k per row (mean ± std over its seeds), then the mask head's box and mask AP."""
    seconds = record.get("seconds", {})
    lines = ["| head | seeds | R@1 any | R@5 any | R@10 any | R@1 merged | train s (seed 0) |",
             "|---|---|---|---|---|---|---|"]
    for name, (label, _, _) in ROWS.items():
        runs = [name] + [f"{name}-s{s}" for s in range(1, SEEDS[name])]
        tasks = [json.loads(p.read_text())["tasks"]["grounding"] for p in (out / f"{r}.json" for r in runs)
                 if p.is_file()]
        if tasks:
            cells = [_cell([t[kind][k] for t in tasks]) for kind, k in
                     (("any", "R@1"), ("any", "R@5"), ("any", "R@10"), ("merged", "R@1"))]
            lines.append(f"| {label} | {len(tasks)} | " + " | ".join(cells) +
                         f" | {seconds.get('train ' + name, 0):.0f} |")
    path = out / "glipv2-masks-instances.json"
    if path.is_file():
        task = json.loads(path.read_text())["tasks"]["instances"]
        lines += ["", "| GLIPv2 + mask head, zero-shot on the world's things | AP50 | AP | AR@100 |", "|---|---|---|---|"]
        for what, part in (("boxes", task), ("masks", task["mask"])):
            lines.append(f"| {what} | {part['AP50']['all']:.1f} | {part['AP']['all']:.1f} | {part['AR100']:.1f} |")
    return "\n".join(lines)


def main() -> int:
    return main_for(__doc__, "runs/grounding/glipv2", SIZES, stages, table)


if __name__ == "__main__":
    sys.exit(main())
