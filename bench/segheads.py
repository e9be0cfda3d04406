"""Trained open-vocabulary segmentation on the synthetic world (issue 21): Cat-Seg and LSeg heads on three
backbones - the shipped tiny CLIP (pretrained=synthworld), a CLIPSelf-refined copy of it and the shipped SILC
variant (pretrained=synthworld-silc) - beside the best training-free dense mode on the same images.

Protocol (the COCO-Stuff -> ADE role split of the papers, on worlds): the heads train on the train scenes of
configs/segheads-base-world.yaml (43 classes; its 12 novel colour-shape pairs never appear in a train scene, so
31 classes are seen); they are evaluated on that world's val scenes (seen / unseen mIoU) and on
configs/segheads-cross-world.yaml, another seed with the full 75-class vocabulary the CLIP knows from its
captions (44 classes the heads never trained on). Every stage is a `clipdense` command, timed and recorded in
OUT/results.json after each stage (a re-run skips stages whose outputs exist); prints the Markdown table.

    OMP_NUM_THREADS=1 python bench/segheads.py --out runs/segheads/bench          # the measured recipe (CPU)
    OMP_NUM_THREADS=1 python bench/segheads.py --out /tmp/sh-smoke --smoke        # tiny sizes: the pipeline
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from staged import main_for

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
SIZES = {"full": {"world": "", "steps": 1000, "distill_steps": 300},
         "smoke": {"world": "--train 16 --val 3", "steps": 2, "distill_steps": 2}}
HEAD_ARGS = {
    # the heads' CPU recipe: 64 px (the CLIP's own 8 x 8 patch grid), batch 8, AdamW lr 1e-3, weight decay 1e-4
    "lseg": "templates=world image_size=64",
    # Cat-Seg narrowed for CPU (128 -> 32 channels, 12-patch -> 4-patch windows), 12 classes per step, and two
    # changes the diagnosis in docs/results/segmentation-heads.md measured: CLIP tensors at 1x (not 0.01x) the
    # head's lr for a 1000-step schedule, and the cost volume from naclip (the shipped CLIP's maskclip map names
    # almost nothing)
    "catseg": "templates=world image_size=64 hidden_dim=32 guidance_dim=32 window=4 decoder_dims=[32,16] "
              "decoder_guidance_dims=[16,8] classes_per_step=12 tuned_lr_scale=1.0 dense_mode=naclip",
}
EVAL = "--tasks segmentation --dense-mode all --templates world --no-progress --device cpu"


def backbones(out: Path) -> dict[str, str]:
    """name -> the --model/--pretrained flags of each backbone."""
    return {"clip": "--model tiny-vit-t8 --pretrained synthworld", "clipself": f"--model {out / 'clipself'}",
            "silc": "--model tiny-vit-t8 --pretrained synthworld-silc"}


def stages(out: Path, s: dict) -> list[tuple[str, str, Path]]:
    """(name, command, output that marks it done), in order."""
    base, cross = out / "base", out / "cross"
    found = [("world base", f"clipdense data synth --config {CONFIGS / 'segheads-base-world.yaml'} --out {base} "
                            f"{s['world']}", base / "world.json"),
             ("world cross", f"clipdense data synth --config {CONFIGS / 'segheads-cross-world.yaml'} --out {cross} "
                             f"{s['world']}", cross / "world.json"),
             ("distill clipself", f"clipdense distill --method clipself --model tiny-vit-t8 --pretrained synthworld "
                                  f"--data {base} --out {out / 'clipself'} --steps {s['distill_steps']} --batch-size 16 "
                                  f"--lr 1e-4 --student-size 64 --global-guard 1.0 --checkpoint-every "
                                  f"{s['distill_steps']} --device cpu", out / "clipself" / "metrics.jsonl")]
    for backbone, flags in backbones(out).items():
        for head, extra in HEAD_ARGS.items():
            run = out / f"{backbone}-{head}"
            args = " ".join(f"--objective-arg {a}" for a in extra.split())
            found.append((f"train {backbone} {head}",
                          f"clipdense train --objective {head} {flags} --data {base} --out {run} --steps {s['steps']} "
                          f"--batch-size 8 --lr 1e-3 --weight-decay 1e-4 --checkpoint-every {s['steps']} "
                          f"--log-every 50 --seed 0 --device cpu {args}", run / "metrics.jsonl"))
            for world, folder in (("base", base), ("cross", cross)):
                result = out / f"{backbone}-{head}-{world}.json"
                found.append((f"eval {backbone} {head} {world}",
                              f"clipdense eval {flags} --data {folder} {EVAL} --head {run} --out {result}", result))
    return found


def _cells(entry: dict) -> list[float]:
    a = entry["argmax"]
    return [a.get("miou_seen", math.nan), a.get("miou_unseen", math.nan), a["miou"]]


def _fmt(values: list[float]) -> str:
    return " | ".join("–" if v != v else f"{100 * v:.1f}" for v in values)


def table(out: Path, record: dict) -> str:
    """One row per backbone x head and per backbone's best training-free mode (chosen by base seen mIoU)."""
    lines = ["| backbone | segmenter | train s | seen mIoU | unseen mIoU | mIoU | cross: seen mIoU | cross: unseen "
             "mIoU | cross: mIoU |", "|---|---|---|---|---|---|---|---|---|"]
    for backbone in backbones(out):
        results = {}
        for head in HEAD_ARGS:
            pair = [out / f"{backbone}-{head}-{w}.json" for w in ("base", "cross")]
            if all(p.is_file() for p in pair):
                results[head] = [json.loads(p.read_text())["tasks"]["segmentation"] for p in pair]
        if not results:
            continue
        base, cross = next(iter(results.values()))
        modes = [m for m in base if not m.startswith("head ")]
        best = max(modes, key=lambda m: base[m]["argmax"]["miou_seen"])
        lines.append(f"| {backbone} | training-free: {best} | 0 | {_fmt(_cells(base[best]))} | "
                     f"{_fmt(_cells(cross[best]))} |")
        for head, (b, c) in results.items():
            key = f"head segmenter/{head}"
            seconds = record.get("seconds", {}).get(f"train {backbone} {head}", math.nan)
            lines.append(f"| {backbone} | {head} | {seconds:.0f} | {_fmt(_cells(b[key]))} | {_fmt(_cells(c[key]))} |")
    return "\n".join(lines)


def main() -> int:
    return main_for(__doc__, "runs/segheads/bench", SIZES, stages, lambda out, record, _sizes: table(out, record))


if __name__ == "__main__":
    sys.exit(main())
