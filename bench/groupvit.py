"""GroupViT beside CLIP on the synthetic world (issue 15): a tiny GroupViT and a tiny CLIP of the same width, depth,
patch size and text tower, trained from scratch on the same world with the same steps x batch (the same images
seen), then measured the same way - zero-shot top-1, retrieval R@1, segmentation mIoU over things and stuff - with
CLIP's training-free dense modes (the best one named) and CLIP + CLIPSelf (distilled on the same images) beside.

Every stage is a `clipdense` command, run as written in the table's recipe, timed, and recorded in OUT/results.json
after each stage (a re-run skips stages whose outputs exist). Prints the Markdown table for docs/results/groupvit.md.

    OMP_NUM_THREADS=1 python bench/groupvit.py --out runs/groupvit/bench          # the measured recipe (CPU)
    OMP_NUM_THREADS=1 python bench/groupvit.py --out /tmp/gv-smoke --smoke        # tiny sizes: the pipeline
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from staged import main_for

# a small vocabulary (4 colours x 4 shapes + the 4 composites, 7 stuff) so minutes of CPU training can learn it
WORLD = ("--image-size 64 --colours red,green,blue,yellow --shapes circle,square,triangle,star "
         "--classify-train-per-class 0 --classify-val-per-class 5")
EVAL = "--tasks zeroshot,retrieval,segmentation --templates world --no-progress"
SIZES = {"full": {"train": 3000, "val": 100, "steps": 600, "batch": 32, "distill_steps": 150, "distill_batch": 16},
         "smoke": {"train": 16, "val": 6, "steps": 2, "batch": 4, "distill_steps": 2, "distill_batch": 4}}
MODELS = {"groupvit": ("groupvit", "tiny-groupvit"), "clip": ("clip", "tiny-vit-t8")}


def stages(out: Path, s: dict[str, int]) -> list[tuple[str, str, Path]]:
    """(name, command, output that marks it done), in order."""
    world = out / "world"
    train = (f"--data {world} --steps {s['steps']} --batch-size {s['batch']} --lr 2e-3 --warmup-steps "
             f"{max(1, s['steps'] // 12)} --checkpoint-every {s['steps']} --log-every 50 --seed 0 --device cpu")
    found: list[tuple[str, str, Path]] = [
        ("world", f"clipdense data synth --out {world} --train {s['train']} --val {s['val']} {WORLD}",
         world / "world.json")]
    for name, (objective, model) in MODELS.items():
        found.append((f"train {name}", f"clipdense train --objective {objective} --model {model} --out {out / name} "
                                       f"{train}", out / name / "metrics.jsonl"))
    clipself = out / "clipself"
    found += [
        ("distill clipself", f"clipdense distill --model {out / 'clip'} --data {world} --out {clipself} --steps "
                             f"{s['distill_steps']} --batch-size {s['distill_batch']} --lr 1e-4 --warmup-steps "
                             f"{max(1, s['distill_steps'] // 10)} --checkpoint-every {s['distill_steps']} "
                             "--student-size 64 --device cpu", clipself / "metrics.jsonl"),
        ("eval groupvit", f"clipdense eval --model {out / 'groupvit'} --data {world} {EVAL} --device cpu "
                          f"--out {out / 'groupvit.json'}", out / "groupvit.json"),
        ("eval clip", f"clipdense eval --model {out / 'clip'} --data {world} {EVAL} --dense-mode all --device cpu "
                      f"--out {out / 'clip.json'}", out / "clip.json"),
        ("eval clipself", f"clipdense eval --model {clipself} --data {world} {EVAL} --dense-mode maskclip "
                          f"--device cpu --out {out / 'clipself.json'}", out / "clipself.json"),
    ]
    return found


def parameters(run: Path) -> tuple[float, float]:
    """(image tower, whole model) parameters in millions of a run's model."""
    import clipdense as cd
    model = cd.load_model(run, device="cpu").model
    return (sum(p.numel() for p in model.visual.parameters()) / 1e6,
            sum(p.numel() for p in model.parameters()) / 1e6)


def _row(label: str, tasks: dict, mode: str, params: tuple[float, float] | None, seen: str, seconds: str) -> str:
    seg = tasks["segmentation"][mode]
    a, b = seg["argmax"], seg["background"] or {}
    r = tasks["retrieval"]
    pct = [100 * x for x in (tasks["zeroshot"]["top1"], r["image_to_text"]["R@1"], r["text_to_image"]["R@1"],
                             a["miou"], a["miou_things"], a["miou_stuff"], b.get("miou_things", float("nan")))]
    size = f"{params[0]:.2f} / {params[1]:.2f}" if params else "same"
    return f"| {label} | {size} | {seen} | {seconds} | " + " | ".join(f"{v:.1f}" for v in pct) + " |"


def table(out: Path, record: dict, sizes: dict[str, int]) -> str:
    """Markdown rows: model, params, images seen, CPU seconds, zero-shot, retrieval, mIoU all / things / stuff."""
    lines = ["| model (dense tasks by) | params M (image / all) | images seen | train s | zero-shot top-1 | "
             "R@1 image→text | R@1 text→image | mIoU | things mIoU | stuff mIoU | bg-thr things mIoU |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    seconds = record.get("seconds", {})
    seen = f"{sizes['steps'] * sizes['batch']:,}"
    results = {name: json.loads((out / f"{name}.json").read_text())["tasks"]
               for name in ("groupvit", "clip", "clipself") if (out / f"{name}.json").is_file()}
    if "groupvit" in results:
        lines.append(_row("tiny GroupViT (its grouping)", results["groupvit"], "grouping",
                          parameters(out / "groupvit"), seen, f"{seconds.get('train groupvit', 0):.0f}"))
    if "clip" in results:
        clip = results["clip"]
        best = max(clip["segmentation"], key=lambda m: clip["segmentation"][m]["argmax"]["miou"])
        params = parameters(out / "clip")
        lines.append(_row("tiny CLIP (vanilla tokens)", clip, "vanilla", params, seen,
                          f"{seconds.get('train clip', 0):.0f}"))
        lines.append(_row(f"tiny CLIP (best training-free mode: {best})", clip, best, None, seen, "0"))
    if "clipself" in results:
        extra = f"+{sizes['distill_steps'] * sizes['distill_batch']:,}"
        lines.append(_row("tiny CLIP + CLIPSelf (maskclip)", results["clipself"], "maskclip", None,
                          f"{seen} {extra}", f"+{seconds.get('distill clipself', 0):.0f}"))
    return "\n".join(lines)


def main() -> int:
    return main_for(__doc__, "runs/groupvit/bench", SIZES, stages, table)


if __name__ == "__main__":
    sys.exit(main())
