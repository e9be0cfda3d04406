"""Small pieces the segmentation-head tests share: tiny head options and a few easy labelled images."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image

from clipdense.data.sample import Sample

CLASSES = ["red square", "blue circle", "green grass"]
COLOURS = [(220, 30, 30), (30, 30, 220), (30, 200, 30)]
#: a Cat-Seg small enough for CPU tests (the recipe's 128 channels and 12-patch windows are the defaults)
TINY_CATSEG = {"templates": "world", "image_size": 64, "hidden_dim": 32, "guidance_dim": 32, "window": 4,
               "decoder_dims": [16, 8], "decoder_guidance_dims": [8, 4]}
TINY_LSEG = {"templates": "plain", "image_size": 64, "features": 32}


def toy_samples(count: int = 4, seed: int = 0, size: int = 64) -> list[Sample]:
    """Green grass with a red square and a blue disc at random places, each a sixth to a quarter of the image
    (labels 0, 1, 2 as ``CLASSES``)."""
    rng = np.random.default_rng(seed)
    out = []
    for index in range(count):
        image = np.zeros((size, size, 3), np.uint8)
        label = np.full((size, size), 2, np.int64)
        image[:] = COLOURS[2]
        top, left = rng.integers(2, size // 2, 2)
        side = int(rng.integers(3 * size // 8, 17 * size // 32))
        image[top:top + side, left:left + side] = COLOURS[0]
        label[top:top + side, left:left + side] = 0
        cy, cx = rng.integers(2, 17 * size // 32, 2) + size // 5
        radius = int(rng.integers(3 * size // 16, 15 * size // 64))
        yy, xx = np.mgrid[:size, :size]
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < radius ** 2
        image[disc] = COLOURS[1]
        label[disc] = 1
        out.append(Sample(Image.fromarray(image), f"toy{index}", semantic=torch.from_numpy(label)))
    return out


def miou(pred: torch.Tensor, label: torch.Tensor, classes: int) -> float:
    """Mean IoU over the classes present in ``label`` or ``pred`` (labels < 0 ignored)."""
    valid = label >= 0
    ious = []
    for c in range(classes):
        inter = ((pred == c) & (label == c) & valid).sum().item()
        union = (((pred == c) | (label == c)) & valid).sum().item()
        if union:
            ious.append(inter / union)
    return float(np.mean(ious))


def options(base: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {**base, "jitter": [1.0, 1.0], "hflip": False, **extra}
