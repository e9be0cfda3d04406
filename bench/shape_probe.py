"""Supervised probe: how fast does a built-in image tower learn the world's thing classes *with labels*?

Issue 8's CLIP runs learn colour long before shape. This trains only the image tower (+ a linear
head) with cross-entropy on the world's single-object scenes, labels read from its COCO instances,
so a slow curve here says the tower, not the contrastive objective, is the bottleneck.

    python bench/shape_probe.py --world worlds/x-max1 --model tiny-vit-t8 --steps 1500 --lr 2e-3
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from clipdense.data.formats.coco import CocoRegions  # noqa: E402
from clipdense.data.world.folder import open_world  # noqa: E402
from clipdense.models import load_model  # noqa: E402
from clipdense.objectives.views import model_image_stats  # noqa: E402


def single_object_scenes(world: str, min_box_area: float) -> tuple[torch.Tensor, list[str]]:
    """uint8 pixels (N, 3, H, W) and class names of the train scenes holding exactly one thing
    whose box covers at least ``min_box_area`` pixels, read with the project's COCO reader."""
    split = open_world(world).split("train")
    scenes = CocoRegions(split.image_dir, split.instances, with_masks=False)
    pixels, names = [], []
    for index in range(len(scenes)):
        sample = scenes[index]
        box = sample.boxes[0] if len(sample.labels) == 1 else None
        if box is not None and float((box[2] - box[0]) * (box[3] - box[1])) >= min_box_area:
            pixels.append(np.asarray(sample.image.convert("RGB")))
            names.append(scenes.classes[int(sample.labels[0])])
    return torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2), names


def normalised(pixels: torch.Tensor, mean: list[float], std: list[float]) -> torch.Tensor:
    images = pixels.float().div(255)
    return (images - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--world", required=True)
    p.add_argument("--model", default="tiny-vit-t8")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--min-box-area", type=float, default=0.0, help="smallest thing kept (box area, pixels)")
    p.add_argument("--val", type=int, default=2000, help="held-out scenes (the first N)")
    p.add_argument("--eval-every", type=int, default=250)
    args = p.parse_args()
    torch.manual_seed(0)
    pixels, labels = single_object_scenes(args.world, args.min_box_area)
    classes = sorted(set(labels))
    target = torch.tensor([classes.index(c) for c in labels])
    bundle = load_model(args.model, device="cpu")
    _, mean, std = model_image_stats(bundle.model)
    images = normalised(pixels, list(mean), list(std))
    val = min(args.val, len(images) // 2)
    tower, head = bundle.model.visual, torch.nn.Linear(bundle.model.visual.output_dim, len(classes))
    optimizer = torch.optim.AdamW([*tower.parameters(), *head.parameters()], lr=args.lr, weight_decay=0.05)
    print(f"{len(classes)} classes, {len(images) - val} train / {val} val scenes", flush=True)
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        pick = val + torch.randint(len(images) - val, (args.batch_size,))
        loss = F.cross_entropy(head(tower(images[pick])), target[pick])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % args.eval_every == 0 or step == args.steps:
            with torch.no_grad():
                accuracy = (head(tower(images[:val])).argmax(1) == target[:val]).float().mean().item()
            print(f"step {step} images {step * args.batch_size} loss {loss.item():.3f} val top-1 "
                  f"{100 * accuracy:.1f} % ({time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
