"""Phrase grounding on the synthetic world (issue 26): GLIP heads on the shipped CLIP, deep fusion vs none, ->
Recall@1/5/10 (ANY-box, MERGED-box; Flickr30k Entities protocol) on the val split, whose captions use synonyms and
novel words, and CPU time.

Every stage is a `clipdense` command, run as written in the table (so the table is its own recipe), timed, and
recorded in OUT/results.json after each stage (a re-run skips stages whose outputs exist). Prints the Markdown
table for docs/results/grounding.md.

    python bench/grounding.py --out runs/grounding/bench          # the measured recipe (CPU)
    python bench/grounding.py --out /tmp/grounding-smoke --smoke  # tiny sizes: checks the pipeline (a minute)
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from staged import main_for

MODEL = "--model tiny-vit-t8 --pretrained synthworld"
#: the world recipe of a GLIP head on a CPU: 128 px input, narrow towers, two fusion layers (GLIP: 6), layer-scale
#: started at 0.1 (GLIP's 1e-4 leaves a short run with fusion that has barely begun to act)
GLIP_WORLD = {"channels": 64, "layers": 2, "fusion_dim": 64, "fusion_heads": 4, "layer_scale": 0.1,
              "image_size": 128}
ARGS = " ".join(f"--objective-arg {k}={v}" for k, v in GLIP_WORLD.items())
SIZES = {"full": {"train": 1000, "val": 200, "steps": 600, "batch": 8, "lr": 1e-3},
         "smoke": {"train": 16, "val": 8, "steps": 4, "batch": 4, "lr": 1e-3}}
VARIANTS = {"glip-fusion": "GLIP, deep fusion (2 layers)", "glip-nofusion": "GLIP, no fusion (same towers)"}


def stages(out: Path, sizes: dict[str, int]) -> list[tuple[str, str, Path]]:
    """(name, command, output that marks it done), in order."""
    world, s = out / "world", sizes
    train = (f"--steps {s['steps']} --batch-size {s['batch']} --lr {s['lr']} --warmup-steps "
             f"{max(1, s['steps'] // 16)} --checkpoint-every {s['steps']} --log-every 20 --device cpu {ARGS}")
    val = f"modulated-coco:images={world / 'val' / 'images'},annotations={world / 'grounding' / 'mdetr_val.json'}"
    out_stages = [("world", f"clipdense data synth --out {world} --train {s['train']} --val {s['val']} "
                            "--classify-train-per-class 0 --classify-val-per-class 0 --grounding",
                   world / "grounding" / "mdetr_val.json")]
    for name, fusion in (("glip-fusion", "true"), ("glip-nofusion", "false")):
        run = out / name
        out_stages += [
            (f"train {name}", f"clipdense train --objective glip {MODEL} --data {world} --out {run} {train} "
                              f"--objective-arg fusion={fusion}", run / "metrics.jsonl"),
            (f"eval {name}", f"clipdense eval {MODEL} --data {val} --tasks grounding --head {run} --device cpu "
                             f"--out {out / (name + '.json')} --no-progress", out / (name + ".json"))]
    # detection: the grounding-trained head on boxes it never saw (zero-shot transfer), and a head trained on the
    # world's detection data as prompts over its base classes (the OV-COCO protocol's split)
    detection = out / "glip-detection"
    out_stages += [
        ("detect glip-fusion", f"clipdense eval {MODEL} --data {world} --tasks detection --head {out / 'glip-fusion'} "
                               f"--device cpu --out {out / 'glip-fusion-detection.json'} --no-progress",
         out / "glip-fusion-detection.json"),
        ("train glip-detection", f"clipdense train --objective glip {MODEL} --data {world} --out {detection} {train} "
                                 "--objective-arg data=detection", detection / "metrics.jsonl"),
        ("detect glip-detection", f"clipdense eval {MODEL} --data {world} --tasks detection --head {detection} "
                                  f"--device cpu --out {out / 'glip-detection-detection.json'} --no-progress",
         out / "glip-detection-detection.json")]
    return out_stages


def table(out: Path, record: dict) -> str:
    """Markdown rows: variant, R@1/5/10 ANY-box, R@1 MERGED-box, train and eval seconds."""
    lines = ["| head | R@1 any | R@5 any | R@10 any | R@1 merged | train s | eval s |", "|---|---|---|---|---|---|---|"]
    seconds = record.get("seconds", {})
    for key, label in VARIANTS.items():
        path = out / f"{key}.json"
        if not path.is_file():
            continue
        task = json.loads(path.read_text())["tasks"]["grounding"]
        lines.append(f"| {label} | {task['any']['R@1']:.1f} | {task['any']['R@5']:.1f} | {task['any']['R@10']:.1f} | "
                     f"{task['merged']['R@1']:.1f} | {seconds.get('train ' + key, 0):.0f} | "
                     f"{seconds.get('eval ' + key, 0):.0f} |")
    lines += ["", "| GLIP head trained on | AP50 novel | AP50 base | AP50 all | AP all | train s |", "|---|---|---|---|---|---|"]
    for key, label in (("glip-fusion", "grounding captions only (zero-shot transfer; every class unseen)"),
                       ("glip-detection", "detection prompts over the base classes")):
        path = out / f"{key}-detection.json"
        if path.is_file():
            task = json.loads(path.read_text())["tasks"]["detection"]
            ap50 = task["AP50"]
            cells = [ap50["novel"], ap50["base"], ap50["all"], task["AP"]["all"]]
            lines.append(f"| {label} | " + " | ".join("–" if v is None or v != v else f"{v:.1f}" for v in cells) +
                         f" | {seconds.get('train ' + key, 0):.0f} |")
    return "\n".join(lines)


def main() -> int:
    return main_for(__doc__, "runs/grounding/bench", SIZES, stages, lambda out, record, _sizes: table(out, record))


if __name__ == "__main__":
    sys.exit(main())
