"""Ship a tiny GroupViT training run inside the package (issue 34), like scripts/ship_weights.py does for the CLIP:

    python scripts/ship_groupvit.py --run runs/synthworld-groupvit --tag synthworld

Writes src/clipdense/models/weights/tiny-groupvit--TAG.{safetensors,md,json}: fp16 weights, a model card with the
numbers measured on the CLIP card's validation world (seed 1, never seen in training) and the recipe, and the hash
record whose zero-shot accuracy tests/test_shipped_weights.py reproduces.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml

import clipdense as cd
from clipdense.data.world.scenes import SynthConfig
from clipdense.data.world.writers import write_world
from clipdense.evaluation import evaluate
from clipdense.models.groupvit import grouping_stats
from clipdense.models.registry import WEIGHTS_DIR

_spec = importlib.util.spec_from_file_location("ship_weights", Path(__file__).with_name("ship_weights.py"))
ship_weights = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ship_weights)
CARD_WORLD = ship_weights.CARD_WORLD


@torch.no_grad()
def val_grouping(bundle: Any, world: Path) -> dict[str, float]:
    """Groups per image and assignment entropy of each stage over the val scenes (the test-time assignment)."""
    from PIL import Image

    files = sorted((world / "val" / "images").glob("*.png"))
    images = torch.stack([bundle.preprocess(Image.open(f).convert("RGB")) for f in files])
    return {k: float(v) for k, v in grouping_stats(bundle.model.visual.float().forward_groups(images)).items()}


def _pct(tree: dict, path: str) -> str:
    for key in path.split("/"):
        tree = tree[key]
    return f"{100 * float(tree):.1f}"


def write_card(tag: str, config: dict, facts: dict, results: dict, grouping: dict, digest: str) -> Path:
    tasks = results["tasks"]
    rows = [("zero-shot top-1 (68 thing classes, single objects)", "zeroshot/top1"),
            ("retrieval image→text R@1 (200 scenes)", "retrieval/image_to_text/R@1"),
            ("retrieval text→image R@1", "retrieval/text_to_image/R@1"),
            ("segmentation mIoU (its grouping)", "segmentation/grouping/argmax/miou"),
            ("segmentation mIoU things", "segmentation/grouping/argmax/miou_things"),
            ("segmentation mIoU stuff", "segmentation/grouping/argmax/miou_stuff")]
    table = "\n".join(f"| {label} | {_pct(tasks, key)} |" for label, key in rows)
    table += "".join(f"\n| groups used per image, stage {i} (of {g}) | {grouping[f'groups_s{i}']:.2f} |"
                     for i, g in enumerate(config["groups"], start=1))
    args = " ".join(f"{k}={v}" for k, v in (config.get("objective_args") or {}).items())
    text = f"""# tiny-groupvit, pretrained="{tag}"

A tiny GroupViT (`tiny-groupvit`: 64 px, patch 8, width 64, stages of 1 / 1 / 1 blocks, {config['groups'][0]} then
{config['groups'][1]} group tokens, open_clip text tower of width 64) trained from random weights by clipdense's
engine, objective `groupvit` ({args}), on the multi-object scenes of clipdense's synthetic world. Its
segmentation is its own grouping: each pixel takes its stage-2 group, each group is named zero-shot.

- Training: {config['steps']} steps x batch {config['batch_size']} ({facts['images_seen'] / 1e6:.2f} M images seen), lr
  {config['lr']}, {facts['wall_minutes']:.0f} minutes on 2 shared CPU cores{facts['history']}: `{facts['command']}` after
  `{facts['world_command']}`.
- Weights: fp16 safetensors, SHA-256 `{digest}`.
- Load: `cd.load_model("tiny-groupvit", pretrained="{tag}")`;
  `clipdense segment IMAGE --model tiny-groupvit --pretrained {tag} --classes ... --out OUT.png` also writes
  OUT_groups.png (the groups of each stage).

## Evaluation

On a freshly generated validation world (seed {CARD_WORLD['seed']}, never seen in training), templates `world`,
measured {time.strftime('%Y-%m-%d')}; `docs/results/groupvit.md` sets it beside the shipped tiny CLIP:

| metric | value |
|---|---|
{table}

## What it is not good for

It saw {facts['images_seen'] / 1e6:.2f} M images, a few percent of the shipped tiny CLIP's 7.2 M, so it names single
objects worse than that CLIP; anything outside the synthetic world; images far from 64 px.
"""
    path = WEIGHTS_DIR / f"tiny-groupvit--{tag}.md"
    path.write_text(text)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, type=Path)
    parser.add_argument("--tag", required=True)
    parser.add_argument("--command", default="clipdense train --config configs/synthworld-groupvit.yaml")
    parser.add_argument("--history", default="", help="how the run went when it was not one sitting (the card "
                        "says it beside the minutes, which count the last sitting only)")
    parser.add_argument("--world-command", default="clipdense data synth --config src/clipdense/models/weights/"
                        "tiny-groupvit--synthworld.world.yaml --out worlds/synthworld-groupvit")
    args = parser.parse_args()
    config = yaml.safe_load((args.run / "config.yaml").read_text())
    facts = {**ship_weights.training_facts(args.run, config), "command": args.command,
             "world_command": args.world_command, "history": f" ({args.history})" if args.history else ""}
    weights = ship_weights.export_fp16(args.run, config["model"], args.tag)
    digest = ship_weights.sha256(weights)
    bundle = cd.load_model("tiny-groupvit", pretrained=args.tag, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        world = Path(tmp) / "world"
        write_world(SynthConfig(out=str(world), **CARD_WORLD))
        results = evaluate(bundle, world, tasks="zeroshot,retrieval,segmentation", templates="world", device="cpu")
        grouping = val_grouping(bundle, world)
    config["groups"] = list(bundle.model.visual.cfg.groups)
    card = write_card(args.tag, config, facts, results, grouping, digest)
    record = {"model": "tiny-groupvit", "tag": args.tag, "sha256": digest, "world": CARD_WORLD, "templates": "world",
              "zeroshot_top1": results["tasks"]["zeroshot"]["top1"], "grouping": grouping,
              "segmentation": results["tasks"]["segmentation"], "torch": torch.__version__, **facts}
    (WEIGHTS_DIR / f"tiny-groupvit--{args.tag}.json").write_text(json.dumps(record, indent=1))
    print(f"wrote {weights} ({weights.stat().st_size / 1e6:.1f} MB), {card}; zero-shot top-1 "
          f"{100 * record['zeroshot_top1']:.1f} %")


if __name__ == "__main__":
    main()
