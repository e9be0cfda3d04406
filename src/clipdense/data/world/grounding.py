"""Write the world's grounding data beside its images (``clipdense data synth --grounding``)::

    WORLD/grounding/mdetr_{train,val}.json                       modulated-detection COCO (GLIP / MDETR), each
                                                                 box with its instance mask (COCO RLE)
    WORLD/grounding/flickr30k_{train,val}/Sentences/NNNNNN.txt   Flickr30k Entities mark-up of the caption
    WORLD/grounding/flickr30k_{train,val}/Annotations/NNNNNN.xml the boxes of each entity
    WORLD/grounding/flickr30k_{train,val}/{train,val}.txt        the image ids of the split

Each caption's noun phrases (``captions.make_caption_phrases``: "a scarlet disc", "two blue stars") are tied to
the box(es) of the things they name; a box is the extent of the thing's visible mask (as the COCO files give it).
Scenes are regenerated from the world's config.yaml, so phrases always match the written images and captions.
Read them with ``--data modulated-coco:images=WORLD/val/images,annotations=WORLD/grounding/mdetr_val.json`` or
``--data flickr30k:root=WORLD/grounding/flickr30k_val,images=WORLD/val/images``; a world with grounding offers
the modulated-COCO part to any consumer that needs ``phrases``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from ...config import atomic_write_bytes, build_config
from ..formats.grounding import GroundedImage, write_flickr30k_entities, write_modulated_coco
from .scenes import Scene, SynthConfig, generate_scene, make_vocabulary
from .writers import SPLITS, mask_rle

GROUNDING_DIR = "grounding"


def mask_box(mask: np.ndarray) -> list[float]:
    """xyxy pixel edges of a mask's extent (the COCO box of the thing: x = first column, w = columns spanned)."""
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def grounded_scene(scene: Scene, file_name: str, size: int) -> GroundedImage:
    """The scene's caption, its phrases' spans and each phrase's boxes with their instance masks (COCO RLE)."""
    boxes = [mask_box(m) if m.any() else None for m in scene.masks]
    spans, phrase_boxes, phrase_masks = [], [], []
    for phrase in scene.phrases:
        found = [i for i in phrase.objects if boxes[i] is not None]
        if found:
            spans.append([(phrase.start, phrase.end)])
            phrase_boxes.append([boxes[i] for i in found])
            phrase_masks.append([mask_rle(scene.masks[i])[0] for i in found])
    return GroundedImage(file_name, size, size, scene.caption, spans, phrase_boxes, phrase_masks)


def write_grounding(world: str | Path, progress: Callable[[int], None] | None = None) -> dict[str, int]:
    """Both grounding layouts for every split of the world at ``world``; returns the phrases written per split."""
    world = Path(world)
    cfg = build_config(SynthConfig, str(world / "config.yaml"), {})
    vocab = make_vocabulary(cfg)
    step = progress or (lambda n: None)
    counts = {}
    for split in SPLITS:
        count = cfg.train if split == "train" else cfg.val
        records = []
        flickr = world / GROUNDING_DIR / f"flickr30k_{split}"
        for index in range(count):
            key = f"{index:06d}"
            record = grounded_scene(generate_scene(cfg, vocab, split, index), f"{key}.png", cfg.image_size)
            records.append(record)
            write_flickr30k_entities(flickr, key, [record])
            step(1)
        flickr.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(flickr / f"{split}.txt", "".join(f"{i:06d}\n" for i in range(count)).encode())
        write_modulated_coco(world / GROUNDING_DIR / f"mdetr_{split}.json", records,
                             f"clipdense synthetic world, {split} split: captions with grounded phrases")
        counts[split] = sum(len(r.spans) for r in records)
    return counts
