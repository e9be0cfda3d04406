"""The depth world: the 2-D world's things standing on a ground plane in front of a wall, at metric depths.

A pinhole camera (focal = image side in pixels) stands ``CAMERA_HEIGHT`` m above a ground plane; the horizon is at
``HORIZON`` of the image height and a wall stands at ``WALL`` m. A thing of physical radius R at depth z is drawn
with radius f R / z pixels, its base on the ground row f h / z below the horizon; far things are drawn first so
near ones occlude them. The depth map holds each pixel's metric depth (ground, wall, or the thing's z).
Captions say how far things are ("a red circle far away"). Every scene is a pure function of (seed, split, index).

```
OUT/{train,val}/images/*.png     OUT/{train,val}/depth/*.png (16-bit, millimetres)     OUT/{train,val}.csv
```
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from ..formats.nyudepth import write_depth_png
from .shapes import COLOURS, DEFAULT_COLOURS, DEFAULT_SHAPES, Thing, draw_thing

CAMERA_HEIGHT, HORIZON, WALL = 1.0, 0.4, 5.0
NEAR, FAR = 1.2, 4.5          # depth range of things (metres)
SPLITS = {"train": 0, "val": 1}


@dataclass
class DepthWorldConfig:
    """Scenes per split, image side, things per scene, seed."""

    train: int = 200
    val: int = 50
    image_size: int = 96
    max_things: int = 3
    seed: int = 0


def distance_words(z: float) -> str:
    """The caption's words for a depth."""
    return "close to the camera" if z < 2.0 else ("a little far" if z < 3.0 else "far away")


def background_depth(size: int) -> np.ndarray:
    """(size, size) depth of the empty scene: the wall above its foot, the ground below it."""
    f, rows = float(size), np.arange(size) + 0.5
    below = rows - HORIZON * size
    ground = np.where(below > 0, CAMERA_HEIGHT * f / np.maximum(below, 1e-6), np.inf)
    return np.repeat(np.minimum(ground, WALL)[:, None], size, 1).astype(np.float32)


def generate_depth_scene(config: DepthWorldConfig, split: str, index: int) -> tuple[np.ndarray, np.ndarray, str]:
    """(image (H, W, 3) uint8, depth (H, W) float32 metres, caption) of one scene."""
    rng = np.random.default_rng([config.seed, 7, SPLITS[split], index])
    size = config.image_size
    depth = background_depth(size)
    shade = np.linspace(0.75, 1.0, size)[:, None, None]
    wall = np.array(rng.choice([(180, 170, 150), (150, 170, 190), (200, 190, 170)]))
    ground = np.array(rng.choice([(110, 90, 70), (90, 110, 80), (120, 120, 120)]))
    image = np.where((depth < WALL)[..., None], ground * shade, wall * shade[::-1]).astype(np.float32)
    image += rng.normal(0, 4, image.shape)
    things = []
    for _ in range(rng.integers(1, config.max_things + 1)):
        z = float(rng.uniform(NEAR, FAR))
        radius = float(rng.uniform(0.25, 0.4)) * size / z
        foot = HORIZON * size + CAMERA_HEIGHT * size / z
        colour, shape = str(rng.choice(DEFAULT_COLOURS)), str(rng.choice(DEFAULT_SHAPES))
        centre = (float(rng.uniform(radius, size - radius)), foot - radius)
        things.append((z, Thing(f"{colour} {shape}", shape, colour, centre, radius, 0.0, COLOURS[colour],
                                COLOURS[colour])))
    for z, thing in sorted(things, key=lambda t: -t[0]):          # far first: near things occlude them
        rgb, mask = draw_thing(thing, size)
        image[mask], depth[mask] = rgb[mask], z
    words = [f"a {t.class_name} {distance_words(z)}" for z, t in sorted(things, key=lambda t: t[0])]
    return np.clip(image, 0, 255).astype(np.uint8), depth, " and ".join(words) + "."


def write_depth_world(out: str | Path, config: DepthWorldConfig,
                      progress: Callable[[int], object] | None = None) -> dict[str, int]:
    """Write every scene of ``config`` under ``out`` (see the module docstring); {split: scenes}."""
    out = Path(out)
    counts = {"train": config.train, "val": config.val}
    for split, count in counts.items():
        (out / split / "images").mkdir(parents=True, exist_ok=True)
        (out / split / "depth").mkdir(parents=True, exist_ok=True)
        rows = []
        for index in range(count):
            image, depth, caption = generate_depth_scene(config, split, index)
            name = f"{split}_{index:06d}"
            Image.fromarray(image).save(out / split / "images" / f"{name}.png")
            write_depth_png(out / split / "depth" / f"{name}.png", depth)
            rows.append((f"{split}/images/{name}.png", caption))
            if progress is not None:
                progress(1)
        with open(out / f"{split}.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(("filepath", "title"))
            writer.writerows(rows)
    return counts
