"""Depth views of point clouds written as an image-text set (open_clip's CSV), to fine-tune a CLIP on the very
views PointCLIP shows it.

A 2-D CLIP has never seen a depth map of a cloud nor read PointCLIP's prompt; a short contrastive fine-tune on
rendered views captioned with that prompt is the cheapest way to see what it can learn (docs/results/3d.md). Each
shape of a ModelNet split becomes ``settings.views`` grey PNGs (the same projection ``encode_point_views`` uses),
captioned with the prompt of its class, and one CSV (``filepath``, ``title``; paths relative to the CSV) lists
them, which ``clipdense train --objective clip --data VIEWS.csv`` reads.

    csv_path = write_view_captions(ModelNetPoints(root, "train"), "views", size=64)
"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from ..data.formats.modelnet import ModelNetPoints
from ..errors import ConfigError
from ..models.pointviews import PointViewSettings, view_images
from ..models.text import Template, resolve_templates

#: the CSV written beside the views' folder
CAPTIONS_CSV = "views.csv"


def view_caption(class_name: str, fill: Sequence[Callable[[str], str]], shape: int, view: int, views: int) -> str:
    """The caption of one view: the prompt set's templates taken in turn over (shape, view), so a set of T
    prompts gives every prompt to about 1/T of the views and one prompt gives it to all."""
    return fill[(shape * views + view) % len(fill)](class_name)


def write_view_captions(reader: ModelNetPoints, out: str | os.PathLike, size: int = 64,
                        settings: PointViewSettings = PointViewSettings(),
                        templates: str | Sequence[Template] = "pointclip") -> Path:
    """Render every shape of ``reader`` into ``settings.views`` ``size`` x ``size`` grey PNGs
    (``out/views/KEY_vM.png``, intensity x 255) and write ``out/views.csv`` with each view's caption, the
    class name in the prompt as the evaluator writes it; the CSV's path."""
    if size < 8:
        raise ConfigError(f"size {size}: expected >= 8 pixels")
    settings.validate()
    fill = resolve_templates(templates)
    out = Path(out)
    (out / "views").mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, str]] = []
    for index in range(len(reader)):
        sample = reader[index]                        # one at a time: clouds of a split may differ in size
        views = view_images(sample.points.float()[None], size, settings)[0]
        pixels = (views * 255).round().clamp(0, 255).to(torch.uint8).numpy()
        name = reader.classes[int(sample.image_label)]
        for m, view in enumerate(pixels):
            relative = f"views/{sample.key}_v{m}.png"
            Image.fromarray(np.ascontiguousarray(view)).save(out / relative)
            rows.append((relative, view_caption(name, fill, index, m, len(pixels))))
    path = out / CAPTIONS_CSV
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(("filepath", "title"))
        writer.writerows(rows)
    return path
