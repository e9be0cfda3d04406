"""The long-tailed world: the synthetic world's things with LVIS's class frequencies, written as LVIS v1 JSON.

``clipdense data synth --out WORLD --lvis`` writes ``WORLD/lvis/`` beside the main world, from the same seed,
colours, shapes and stuff:

```
WORLD/lvis/images/{train2017,val2017}/000000000001.png   scenes (the COCO / LVIS folder names)
WORLD/lvis/annotations/lvis_v1_{train,val}.json          LVIS v1: frequency per category, federated labels
WORLD/lvis/{train,val}.yaml                              --data files (format: lvis)
WORLD/lvis/README.md, lvis_world.json                    the buckets, counts and the config
```

Long tail: ``classes`` thing classes are drawn; ``frequent`` of them get 130-220 training images, ``common`` 14-80,
the rest 1-8 (log-uniform), so that after occlusion and federated drops they fall into LVIS's buckets (rare 1-10
training images, common 11-100, frequent > 100). Each category's ``frequency`` is computed from the images that
really annotate it in train (as LVIS does), never copied from the target. Val scenes draw classes uniformly, so
every bucket has val instances.

Federated annotation, as LVIS collected it: per image, a present class is left unchecked with
``unchecked_fraction`` (no boxes, not negative: unknown there); a class shown twice is boxed once and listed in
``not_exhaustive_category_ids`` with ``not_exhaustive_fraction``; ``negatives`` absent classes are listed in
``neg_category_ids``. Every other class is unknown on that image. Masks are compressed RLE (the LVIS API and
pycocotools read it like polygons); ``coco_url`` names the file as real LVIS does, there is no ``file_name``.
Every scene is a pure function of (config, split, index), like the main world's.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import yaml

from ...config import atomic_write_bytes
from ...errors import ConfigError
from ..formats.lvis import FREQUENCIES, frequency_of
from .scenes import (SPLIT_CODES, SynthConfig, Vocabulary, _finish, _make_thing, _stuff_layout, make_vocabulary,
                     place_if_visible)
from .writers import mask_rle, png_bytes

LVIS_CODE = 27          # keeps this world's random streams apart from the main world's
SPLIT_FOLDERS = {"train": "train2017", "val": "val2017"}
URL = "http://clipdense.invalid/world"   # .invalid: a name that never resolves (the files are local)


@dataclass
class LvisWorldConfig:
    """The long tail and the federated annotation of ``WORLD/lvis`` (the rest comes from the world's config)."""

    train: int = 600
    val: int = 150
    classes: int = 40                 # thing classes used (0 = every thing of the world)
    frequent: int = 6
    common: int = 14                  # the remaining classes are rare
    frequent_images: list[int] = field(default_factory=lambda: [130, 220])
    common_images: list[int] = field(default_factory=lambda: [14, 80])
    rare_images: list[int] = field(default_factory=lambda: [1, 8])
    max_objects: int = 4
    duplicate_fraction: float = 0.2   # an image shows a second instance of one of its classes
    unchecked_fraction: float = 0.1   # a present class is not checked on an image (no boxes, not negative)
    not_exhaustive_fraction: float = 0.5   # a class shown twice is boxed once, listed not exhaustive
    negatives: int = 6                # absent classes verified per image


def scaled_config(scenes: int) -> LvisWorldConfig:
    """The default long tail for ``scenes`` training scenes (val a quarter): the defaults are for 600; fewer scenes
    get proportionally fewer frequent and common classes, so that every bucket still fits (frequent classes need
    > 100 training images each, a scene holds at most ``max_objects``)."""
    base = LvisWorldConfig()
    ratio = scenes / base.train
    return LvisWorldConfig(train=scenes, val=max(1, scenes // 4),
                           frequent=max(1, min(base.frequent, round(base.frequent * ratio))),
                           common=max(2, min(base.common, round(base.common * ratio))))


def check_config(lcfg: LvisWorldConfig, available: int) -> None:
    """Refuse impossible long tails in one line naming the option."""
    if lcfg.train < 1 or lcfg.val < 0 or lcfg.max_objects < 1 or lcfg.negatives < 0:
        raise ConfigError("lvis world: train >= 1, val >= 0, max_objects >= 1 and negatives >= 0 expected")
    classes = lcfg.classes or available
    if not 0 < classes <= available or lcfg.frequent < 0 or lcfg.common < 0 or lcfg.frequent + lcfg.common > classes:
        raise ConfigError(f"lvis world: classes {lcfg.classes} (of the world's {available} things) must hold "
                          f"frequent {lcfg.frequent} + common {lcfg.common}")
    for name in ("frequent_images", "common_images", "rare_images"):
        low, high = getattr(lcfg, name)
        if not 1 <= low <= high:
            raise ConfigError(f"lvis world: {name} {getattr(lcfg, name)}: expected [low, high] with 1 <= low <= high")
    for name in ("duplicate_fraction", "unchecked_fraction", "not_exhaustive_fraction"):
        if not 0 <= getattr(lcfg, name) <= 1:
            raise ConfigError(f"lvis world: {name} {getattr(lcfg, name)}: expected a fraction in [0, 1]")


@dataclass
class LvisPlan:
    """Which classes the world uses, their target bucket and training-image count, and each scene's classes."""

    classes: list[str]
    target: dict[str, str]            # class -> intended bucket (r / c / f)
    counts: dict[str, int]            # class -> intended training images
    scenes: dict[str, list[list[str]]]   # split -> per scene, the classes to draw (a class twice: two instances)


def _log_uniform(rng: np.random.Generator, bounds: list[int]) -> int:
    low, high = bounds
    return int(round(np.exp(rng.uniform(np.log(low), np.log(high + 0.499)))))


def _with_duplicates(rng: np.random.Generator, names: list[str], lcfg: LvisWorldConfig) -> list[str]:
    if names and len(names) < lcfg.max_objects and rng.random() < lcfg.duplicate_fraction:
        names = names + [names[int(rng.integers(len(names)))]]
    return names


def plan_world(cfg: SynthConfig, lcfg: LvisWorldConfig) -> LvisPlan:
    """The long tail: classes, their buckets and training-image counts, and every scene's class list."""
    things = make_vocabulary(cfg).things
    check_config(lcfg, len(things))
    rng = np.random.default_rng([cfg.seed, LVIS_CODE, 99])
    classes = [things[int(i)] for i in rng.permutation(len(things))[: lcfg.classes or len(things)]]
    target = {c: "f" if i < lcfg.frequent else "c" if i < lcfg.frequent + lcfg.common else "r"
              for i, c in enumerate(classes)}
    bounds = {"f": lcfg.frequent_images, "c": lcfg.common_images, "r": lcfg.rare_images}
    counts = {c: min(lcfg.train, _log_uniform(rng, bounds[target[c]])) for c in classes}
    train: list[list[str]] = [[] for _ in range(lcfg.train)]
    for name in sorted(classes, key=lambda c: counts[c]):     # rarest first, each into scenes with room left
        room = [i for i, names in enumerate(train) if len(names) < lcfg.max_objects]
        for index in rng.choice(len(room), min(counts[name], len(room)), replace=False):
            train[room[int(index)]].append(name)
    val = [[classes[int(i)] for i in rng.choice(len(classes), int(rng.integers(1, min(lcfg.max_objects,
                                                                                       len(classes)) + 1)),
                                                 replace=False)] for _ in range(lcfg.val)]
    scenes = {"train": [_with_duplicates(rng, names, lcfg) for names in train],
              "val": [_with_duplicates(rng, names, lcfg) for names in val]}
    return LvisPlan(classes, target, counts, scenes)


def _place(rng: np.random.Generator, cfg: SynthConfig, vocab: Vocabulary, names: list[str]
           ) -> tuple[list[Any], list[np.ndarray], np.ndarray]:
    """Draw ``names`` largest-first (in the given order), rejecting placements that hide an earlier thing; a
    thing that finds no place in 8 tries is left out."""
    size = cfg.image_size
    scales = sorted(np.exp(rng.uniform(np.log(cfg.min_scale), np.log(cfg.max_scale), len(names))), reverse=True)
    owner = np.full((size, size), -1, np.int16)
    colour = np.zeros((size, size, 3), np.uint8)
    things: list[Any] = []
    full_area: list[int] = []
    for name, scale in zip(names, scales):
        radius = 0.5 * scale * size
        lo, hi = min(0.7 * radius, size / 2), max(size - 0.7 * radius, size / 2)
        colour_name, shape = vocab.combos.get(name, (None, name))
        for _ in range(8):
            if shape == "house":
                colour_name = cfg.colours[int(rng.integers(len(cfg.colours)))]
            centre = (float(rng.uniform(lo, hi)), float(rng.uniform(lo, hi)))
            thing = _make_thing(rng, cfg, name, shape, colour_name, radius, centre)
            placed = place_if_visible(thing, size, things, full_area, owner, colour)
            if placed is not None:
                owner, colour = placed
                break
    return things, [owner == j for j in range(len(things))], colour


def _federate(rng: np.random.Generator, lcfg: LvisWorldConfig, classes: list[str], present: list[str]
              ) -> tuple[set[str], set[str], list[str]]:
    """(unchecked classes, not-exhaustive classes, negative classes) of one scene."""
    unchecked, not_exhaustive = set(), set()
    for name in dict.fromkeys(present):
        if rng.random() < lcfg.unchecked_fraction:
            unchecked.add(name)
        elif present.count(name) > 1 and rng.random() < lcfg.not_exhaustive_fraction:
            not_exhaustive.add(name)
    absent = [c for c in classes if c not in present]
    negative = [absent[int(i)] for i in sorted(rng.choice(len(absent), min(lcfg.negatives, len(absent)),
                                                          replace=False))] if absent else []
    return unchecked, not_exhaustive, negative


def encode_lvis_scene(cfg: SynthConfig, lcfg: LvisWorldConfig, plan: LvisPlan, split: str, index: int
                      ) -> dict[str, Any]:
    """One scene: PNG bytes, every drawn object (class, RLE, bbox, area, whether it is annotated) and the
    federated lists. Objects that are not annotated are the truth a federated evaluation must not punish."""
    vocab = make_vocabulary(cfg)
    rng = np.random.default_rng([cfg.seed, LVIS_CODE, SPLIT_CODES[split], index])
    background, _, _ = _stuff_layout(rng, cfg)
    things, masks, things_rgb = _place(rng, cfg, vocab, plan.scenes[split][index])
    image = _finish(rng, background, things_rgb, masks)
    present = [t.class_name for t in things]
    unchecked, not_exhaustive, negative = _federate(
        np.random.default_rng([cfg.seed, LVIS_CODE, SPLIT_CODES[split], index, 1]), lcfg, plan.classes, present)
    objects, boxed = [], set()
    for name, mask in zip(present, masks):
        rle, bbox, area = mask_rle(mask)
        annotated = name not in unchecked and not (name in not_exhaustive and name in boxed)
        boxed.add(name)
        objects.append({"class": name, "segmentation": rle, "bbox": bbox, "area": area, "annotated": annotated})
    return {"image": png_bytes(image), "objects": objects, "negative": negative,
            "not_exhaustive": sorted(not_exhaustive), "unchecked": sorted(unchecked)}


def category_ids(plan: LvisPlan) -> dict[str, int]:
    """class -> LVIS category id (1.. in alphabetical order of the names, as LVIS numbers its categories)."""
    return {name: i + 1 for i, name in enumerate(sorted(plan.classes))}


def _categories(plan: LvisPlan, train_images: dict[str, set], train_instances: dict[str, int]) -> list[dict]:
    out = []
    for name, cid in category_ids(plan).items():
        word = name.replace(" ", "_")
        count = len(train_images.get(name, ()))
        out.append({"id": cid, "name": word, "synonyms": [word], "synset": f"{word}.n.01",
                    "def": f"a {name} of the clipdense synthetic world", "image_count": count,
                    "instance_count": train_instances.get(name, 0), "frequency": frequency_of(count)})
    return out


def _write_split(root: Path, cfg: SynthConfig, lcfg: LvisWorldConfig, plan: LvisPlan, split: str,
                 progress: Callable[[int], None]) -> tuple[list, list, dict[str, set], dict[str, int]]:
    folder = root / "images" / SPLIT_FOLDERS[split]
    folder.mkdir(parents=True, exist_ok=True)
    ids = category_ids(plan)
    images, annotations = [], []
    seen: dict[str, set] = {}
    instances: dict[str, int] = {}
    for index in range(len(plan.scenes[split])):
        rec = encode_lvis_scene(cfg, lcfg, plan, split, index)
        image_id, name = index + 1, f"{index + 1:012d}.png"
        (folder / name).write_bytes(rec["image"])
        images.append({"id": image_id, "width": cfg.image_size, "height": cfg.image_size,
                       "coco_url": f"{URL}/{SPLIT_FOLDERS[split]}/{name}",
                       "neg_category_ids": sorted(ids[c] for c in rec["negative"]),
                       "not_exhaustive_category_ids": sorted(ids[c] for c in rec["not_exhaustive"])})
        for obj in rec["objects"]:
            if obj["annotated"]:
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": ids[obj["class"]],
                                    "segmentation": obj["segmentation"], "area": obj["area"], "bbox": obj["bbox"]})
                seen.setdefault(obj["class"], set()).add(image_id)
                instances[obj["class"]] = instances.get(obj["class"], 0) + 1
        progress(1)
    return images, annotations, seen, instances


def write_lvis_world(root: str | Path, cfg: SynthConfig, lcfg: LvisWorldConfig | None = None,
                     progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Write ``root`` (normally WORLD/lvis); returns images per split and classes per bucket."""
    lcfg, root, step = lcfg or LvisWorldConfig(), Path(root), progress or (lambda n: None)
    plan = plan_world(cfg, lcfg)
    splits = {s: _write_split(root, cfg, lcfg, plan, s, step) for s in ("train", "val")}
    categories = _categories(plan, splits["train"][2], splits["train"][3])
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for split, (images, annotations, _, _) in splits.items():
        doc = {"info": {"description": f"clipdense long-tailed world, {split} split (LVIS v1 format)"},
               "licenses": [], "images": images, "annotations": annotations, "categories": categories}
        atomic_write_bytes(root / "annotations" / f"lvis_v1_{split}.json", json.dumps(doc).encode())
        spec = {"format": "lvis", "images": "images", "annotations": f"annotations/lvis_v1_{split}.json"}
        atomic_write_bytes(root / f"{split}.yaml", yaml.safe_dump(spec, sort_keys=False).encode())
    buckets = {f: sorted(c["name"].replace("_", " ") for c in categories if c["frequency"] == f) for f in FREQUENCIES}
    summary = {"images": {s: len(v[0]) for s, v in splits.items()},
               "annotations": {s: len(v[1]) for s, v in splits.items()},
               "buckets": {f: len(names) for f, names in buckets.items()}}
    meta = {"format": "clipdense-lvis-world", "version": 1, "seed": cfg.seed, "classes": plan.classes,
            "target": plan.target, "target_images": plan.counts, "frequency": buckets, **summary,
            "config": dataclasses.asdict(lcfg)}
    atomic_write_bytes(root / "lvis_world.json", json.dumps(meta, indent=1).encode())
    atomic_write_bytes(root / "README.md", _readme(cfg, lcfg, summary, buckets).encode())
    return summary


def _readme(cfg: SynthConfig, lcfg: LvisWorldConfig, summary: dict[str, Any], buckets: dict[str, list]) -> str:
    return f"""# The long-tailed world (LVIS v1 format), seed {cfg.seed}, {cfg.image_size} px

Written by `clipdense data synth --lvis` (see `clipdense.data.world.lvis`). {summary['images']['train']} train and
{summary['images']['val']} val scenes; {summary['annotations']['train']} + {summary['annotations']['val']} boxed
instances (RLE masks).

| bucket (training images) | classes |
|---|---|
| rare (1-10; 0 = placed nowhere in train) | {len(buckets['r'])} |
| common (11-100) | {len(buckets['c'])} |
| frequent (> 100) | {len(buckets['f'])} |

Rare classes (OV-LVIS's novel classes): {', '.join(buckets['r']) or 'none'}.

Federated labels per image: `neg_category_ids` ({lcfg.negatives} absent classes checked), `not_exhaustive_category_ids`
(a class shown twice, boxed once, with probability {lcfg.not_exhaustive_fraction}); a present class is unchecked
(no boxes, not negative) with probability {lcfg.unchecked_fraction}.

    clipdense train --objective fvit --data {{WORLD}}/lvis/train.yaml ...      # rare classes never train
    clipdense eval --tasks lvis --head RUN --data {{WORLD}}/lvis/val.yaml ...  # the lvis API: AP, APr/APc/APf
"""
