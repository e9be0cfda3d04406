"""Why GroupViT's groups collapse (issue 34): short runs of the tiny GroupViT on a small world, one setting changed
at a time, each measured by the groups it uses per stage while training (the `groups_s*` / `entropy_s*` metrics
the objective logs) and after it (noise-free assignment on the val scenes), and by its segmentation mIoU.

Every run is a `clipdense train` command (its model a random-init variant of `tiny-groupvit` written to
OUT/models/NAME.safetensors when the variant changes the architecture), then `clipdense eval` on segmentation.
Results go to OUT/results.json after every run (a re-run skips finished runs); the table is printed at the end.

    OMP_NUM_THREADS=1 nice -n 15 python bench/groupvit_collapse.py --out runs/gv34/sweep --runs paper,tau0.5
    OMP_NUM_THREADS=1 python bench/groupvit_collapse.py --out /tmp/gvc-smoke --size smoke --runs paper
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from staged import run_stage

WORLD = ("--image-size 64 --colours red,green,blue,yellow --shapes circle,square,triangle,star --max-objects 3 "
         "--classify-train-per-class 0 --classify-val-per-class 2")
SIZES = {"full": {"train": 3000, "val": 100, "steps": 300, "batch": 32},
         "mini": {"train": 1000, "val": 100, "steps": 150, "batch": 32},
         "smoke": {"train": 16, "val": 4, "steps": 2, "batch": 4}}
#: name -> (architecture overrides of tiny-groupvit's vision_cfg, extra train flags, objective args)
RUNS: dict[str, tuple[dict[str, Any], str, str]] = {
    "paper": ({}, "", ""),                                       # 16 / 8 groups, tau 1, hard, 3 nouns, weight 1
    "paper-groups": ({"groups": [64, 8]}, "", ""),               # the paper's 64 then 8 group tokens
    "tau0.5": ({"gumbel_tau": 0.5}, "", ""),
    "tau2": ({"gumbel_tau": 2.0}, "", ""),
    "no-multilabel": ({}, "", "multi_label=0"),
    "multilabel-w3": ({}, "", "multi_label_weight=3"),
    "lr5e-4": ({}, "--lr 5e-4", ""),
    "lr1e-2": ({}, "--lr 1e-2", ""),
    "deeper": ({"depths": [2, 1, 1]}, "", ""),
    "group-nouns": ({}, "", "multi_label_pool=group"),     # not the paper: nouns scored by their best segment
    "no-gumbel": ({"gumbel": False}, "", ""),                 # training assigns by the test-time argmax
    "no-gumbel-group-nouns": ({"gumbel": False}, "", "multi_label_pool=group"),
}


def variant_model(out: Path, name: str, overrides: dict[str, Any]) -> str:
    """The --model of a run: tiny-groupvit itself, or a random-init file of it with ``overrides`` applied."""
    if not overrides:
        return "tiny-groupvit"
    import clipdense as cd
    from clipdense.models.groupvit import GroupViTFamily

    config = GroupViTFamily().config("tiny-groupvit")
    config["vision_cfg"] = {**config["vision_cfg"], **overrides}
    path = out / "models" / f"{name}.safetensors"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        model, _, _ = GroupViTFamily().create(f"tiny-groupvit-{name}", config, None)
        cd.save_weights(model, path, f"tiny-groupvit-{name}", config)
    return str(path)


@torch.no_grad()
def val_grouping(run: Path, world: Path, limit: int = 100) -> dict[str, float]:
    """Groups per image and entropy at each stage over the val scenes, noise-free (the test-time assignment)."""
    import clipdense as cd
    from PIL import Image

    from clipdense.models.groupvit import grouping_stats

    bundle = cd.load_model(run, device="cpu")
    files = sorted((world / "val" / "images").glob("*.png"))[:limit]
    images = torch.stack([bundle.preprocess(Image.open(f).convert("RGB")) for f in files])
    stats = grouping_stats(bundle.model.visual.forward_groups(images))
    return {k: round(float(v), 3) for k, v in stats.items()}


def curve(run: Path, key: str) -> list[float]:
    """A logged metric over training (one value per log record that has it)."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [round(r[key], 2) for r in rows if key in r]


def one_run(out: Path, world: Path, name: str, sizes: dict[str, int]) -> dict[str, Any]:
    overrides, flags, objective_args = RUNS[name]
    run = out / name
    model = variant_model(out, name, overrides)
    args = "".join(f" --objective-arg {a}" for a in objective_args.split()) if objective_args else ""
    train = (f"clipdense train --objective groupvit --model {model} --out {run} --data {world} --steps {sizes['steps']}"
             f" --batch-size {sizes['batch']} --lr 2e-3 --warmup-steps {max(1, sizes['steps'] // 12)}"
             f" --checkpoint-every {sizes['steps']} --log-every {max(1, sizes['steps'] // 10)} --seed 0"
             f" --device cpu --num-workers 0 {flags}{args}")
    evaluate = (f"clipdense eval --model {run} --data {world} --tasks segmentation --templates world --no-progress "
                f"--device cpu --out {run / 'eval.json'}")
    seconds = run_stage(train)
    run_stage(evaluate)
    seg = json.loads((run / "eval.json").read_text())["tasks"]["segmentation"]["grouping"]["argmax"]
    return {"command": train, "eval": evaluate, "train_s": round(seconds, 1),
            "curve_s1": curve(run, "groups_s1"), "curve_s2": curve(run, "groups_s2"),
            "loss": curve(run, "loss")[-1], "val": val_grouping(run, world),
            "miou": round(100 * seg["miou"], 1), "miou_things": round(100 * seg["miou_things"], 1),
            "miou_stuff": round(100 * seg["miou_stuff"], 1)}


def table(results: dict[str, Any]) -> str:
    lines = ["| run | train s | loss | groups s1 over training | groups s2 over training | val groups s1 / s2 | "
             "val entropy s1 / s2 | mIoU | things | stuff |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        v = r["val"]
        lines.append(f"| {name} | {r['train_s']:.0f} | {r['loss']:.2f} | {' '.join(map(str, r['curve_s1']))} | "
                     f"{' '.join(map(str, r['curve_s2']))} | {v['groups_s1']:.1f} / {v['groups_s2']:.1f} | "
                     f"{v['entropy_s1']:.2f} / {v['entropy_s2']:.2f} | {r['miou']} | {r['miou_things']} | "
                     f"{r['miou_stuff']} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/gv34/sweep")
    parser.add_argument("--runs", default=",".join(RUNS), help=f"comma-separated, of {sorted(RUNS)}")
    parser.add_argument("--size", choices=sorted(SIZES), default="full", help="world and run sizes (smoke: a check)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    out, sizes = Path(args.out), SIZES[args.size]
    out.mkdir(parents=True, exist_ok=True)
    world = out / "world"
    if not (world / "world.json").is_file():
        run_stage(f"clipdense data synth --out {world} --train {sizes['train']} --val {sizes['val']} {WORLD}")
    path = out / "results.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    for name in args.runs.split(","):
        if name in results:
            continue
        start = time.perf_counter()
        results[name] = one_run(out, world, name, sizes)
        path.write_text(json.dumps(results, indent=1))
        print(f"[done] {name} in {time.perf_counter() - start:.0f} s: {table({name: results[name]})}", flush=True)
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
