"""Does a CLIP know how far things are in the depth world? Two probes beside bench/depth.py's DepthCLIP rows
(docs/results/3d.md), for the shipped tiny CLIP or a run fine-tuned on the depth world's captions:

- image level: on val scenes holding a single thing, the caption's distance words ("close to the camera",
  "a little far", "far away") told apart by the whole-image embedding against "a {thing} {words}." (chance 1/3);
- dense: DepthCLIP with the world's own words as prompts ("a thing {words}.") and bins at the middle of each
  word's depth range (1.6, 2.5, 3.75 m) instead of the paper's seven words and 1-3 m bins.

    OMP_NUM_THREADS=1 python bench/depth_words.py [--model RUN] [--val 250] [--dense-val 100]
"""
from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F
from PIL import Image

import clipdense as cd
from clipdense.data.world.depth import DepthWorldConfig, distance_words, generate_depth_scene
from clipdense.evaluation.depth import add_errors, depth_errors, depth_metrics
from clipdense.tasks.depth import DepthClipConfig

WORDS = ("close to the camera", "a little far", "far away")       # distance_words' three answers, nearest first
BINS = (1.6, 2.5, 3.75)                                           # middles of [1.2, 2), [2, 3), [3, 4.5) m


@torch.no_grad()
def image_level(bundle, config: DepthWorldConfig, count: int) -> dict:
    """Accuracy of the distance words on the first ``count`` val scenes that hold one thing."""
    hits = total = 0
    for index in range(count):
        image, _, caption = generate_depth_scene(config, "val", index)
        if " and " in caption:
            continue
        truth = next(w for w in WORDS if caption.endswith(f" {w}."))
        thing = caption[len("a "): -len(f" {truth}.")]
        texts = bundle.tokenizer([f"a {thing} {w}." for w in WORDS])
        pixels = bundle.preprocess(Image.fromarray(image))[None]
        scores = F.normalize(bundle.model.encode_image(pixels), dim=-1) @ F.normalize(
            bundle.model.encode_text(texts), dim=-1).T
        hits += int(WORDS[int(scores.argmax())] == truth)
        total += 1
    return {"single_thing_scenes": total, "distance_word_top1": 100 * hits / max(total, 1), "chance": 100 / 3}


def dense_world_words(bundle, config: DepthWorldConfig, count: int) -> dict:
    """DepthCLIP (maskclip) with the world's words and bins on the first ``count`` val scenes."""
    depth_config = DepthClipConfig(words=WORDS, bins=BINS, template="a thing {}.", mode="maskclip")
    totals: dict[str, float] = {}
    for index in range(count):
        image, depth, _ = generate_depth_scene(config, "val", index)
        add_errors(totals, depth_errors(cd.depth(bundle, Image.fromarray(image), depth_config),
                                        torch.from_numpy(depth)))
    return depth_metrics(totals)


def main() -> None:
    torch.set_num_threads(1)
    p = argparse.ArgumentParser()
    p.add_argument("--model", default=None, help="a run dir or weights file (default: the shipped tiny CLIP)")
    p.add_argument("--val", type=int, default=250, help="val scenes searched for single-thing ones")
    p.add_argument("--dense-val", type=int, default=100, help="val scenes of the dense probe (bench/depth.py's)")
    args = p.parse_args()
    assert {distance_words(z) for z in (1.5, 2.5, 4.0)} == set(WORDS), "the world's distance words changed"
    bundle = cd.load_model(args.model) if args.model else cd.load_model("tiny-vit-t8", pretrained="synthworld")
    config = DepthWorldConfig(train=0, val=args.val)                 # bench/depth.py's world: seed 0, 96 px
    print(json.dumps({"model": args.model or "tiny-vit-t8 synthworld",
                      "image_level": image_level(bundle, config, args.val),
                      "dense_world_words": dense_world_words(bundle, config, args.dense_val)}, indent=1))


if __name__ == "__main__":
    main()
