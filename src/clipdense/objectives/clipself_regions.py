"""CLIPSelf's regions and per-sample views: grid cells or the sample's boxes, student image, teacher crops.

Boxes travel in normalised [0, 1] x1,y1,x2,y2 coordinates so the student can run at any size.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torchvision.transforms import InterpolationMode

from ..data.sample import Sample
from ..models.pooling import crop_boxes, expand_boxes

REGION_MODES = ("grid", "boxes")


def grid_boxes(generator: torch.Generator, max_split: int = 6, max_regions: int = 20) -> torch.Tensor:
    """CLIPSelf's grid rule: m in 1..M, n in ceil((m+1)/2)..min(2m, M); an m (columns) x n (rows)
    grid, shuffled, at most K cells kept. Returns (k, 4) normalised boxes."""
    m = int(torch.randint(1, max_split + 1, (), generator=generator))
    n_low, n_high = math.ceil((m + 1) / 2), min(2 * m, max_split)
    n = int(torch.randint(n_low, n_high + 1, (), generator=generator))
    xs, ys = torch.linspace(0, 1, m + 1), torch.linspace(0, 1, n + 1)
    cells = torch.tensor([[xs[i], ys[j], xs[i + 1], ys[j + 1]] for j in range(n) for i in range(m)])
    order = torch.randperm(len(cells), generator=generator)[:max_regions]
    return cells[order]


def image_digest(image: Image.Image) -> int:
    """63-bit hash of the decoded pixels: a cache key that changes when the image does."""
    digest = hashlib.sha1(image.tobytes() + f"{image.size}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def region_keys(image_hash: int, boxes: torch.Tensor, teacher_size: int) -> torch.Tensor:
    """One 63-bit key per (image, crop box, teacher input size), for the teacher cache."""
    keys = []
    for box in np.round(boxes.numpy().astype(np.float64), 5):
        digest = hashlib.sha1(f"{image_hash}:{box.tolist()}:{teacher_size}".encode()).digest()
        keys.append(int.from_bytes(digest[:8], "little") & (2**63 - 1))
    return torch.tensor(keys, dtype=torch.int64)


def normalised_boxes(sample: Sample) -> torch.Tensor:
    """The sample's pixel boxes clipped to the image and normalised; boxes under a pixel on a side are
    dropped, and the whole image is the one region when none remain (as the official proposal variant)."""
    width, height = sample.image.size
    boxes = sample.boxes.reshape(-1, 4).float() if sample.boxes is not None else torch.zeros(0, 4)
    limit = torch.tensor([width, height, width, height], dtype=torch.float32)
    boxes = torch.minimum(boxes.clamp_min(0), limit)
    boxes = boxes[((boxes[:, 2] - boxes[:, 0]) >= 1) & ((boxes[:, 3] - boxes[:, 1]) >= 1)]
    if not len(boxes):
        return torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    return boxes / limit


@dataclass
class ClipSelfTransform:
    """(sample, generator) -> student image, teacher crops, boxes, cache keys (padded to K).

    Regions are grid cells (``options.regions == "grid"``) or the sample's boxes. Teacher crops are cut
    by ``clipdense.models.pooling.crop_boxes`` (RoIAlign) from the normalised full-resolution image: the
    same crop path as the evaluation's ``crops`` baseline. With ``fixed_regions`` the grid is drawn
    from the image's hash, so every epoch sees the same cells and the teacher cache can serve them.
    """

    options: Any   # ClipSelfOptions (objectives.clipself); not imported here to keep the modules acyclic
    student_size: int
    teacher_size: int
    mean: Sequence[float]
    std: Sequence[float]
    fixed_regions: bool = False
    with_global: bool = True
    cached: Callable[[int], bool] | None = None   # key -> teacher embedding already cached (skip the crop)

    def _boxes(self, sample: Sample, image_hash: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(student boxes, teacher crop boxes), both normalised."""
        o = self.options
        if o.regions == "grid":
            if self.fixed_regions:
                generator = torch.Generator().manual_seed(image_hash)
            boxes = grid_boxes(generator, o.max_split, o.max_regions)
            return boxes, boxes
        boxes = normalised_boxes(sample)
        order = torch.arange(len(boxes)) if self.fixed_regions else torch.randperm(len(boxes), generator=generator)
        boxes = boxes[order[: o.max_regions]]
        return boxes, expand_boxes(boxes, o.box_expand, 1.0, 1.0)

    def _view(self, image: Image.Image, size: int) -> torch.Tensor:
        resized = TF.resize(image, [size, size], interpolation=InterpolationMode.BICUBIC)
        return TF.normalize(TF.to_tensor(resized), list(self.mean), list(self.std))

    def _crops(self, image: Image.Image, crop_boxes_: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """(K, 3, T, T) teacher crops; regions the cache already serves stay zero (never looked at)."""
        k, size, capacity = len(crop_boxes_), self.teacher_size, self.options.max_regions
        crops = torch.zeros(capacity, 3, size, size)
        todo = torch.tensor([not (self.cached is not None and self.cached(int(keys[i]))) for i in range(k)],
                            dtype=torch.bool)
        if todo.any():
            pixels = TF.normalize(TF.to_tensor(image), list(self.mean), list(self.std))
            scale = torch.tensor([image.width, image.height] * 2, dtype=torch.float32)
            crops[:k][todo] = crop_boxes(pixels[None], [crop_boxes_[todo] * scale], (size, size))
        return crops

    def __call__(self, sample: Sample, generator: torch.Generator) -> dict[str, torch.Tensor]:
        image = sample.image
        image_hash = image_digest(image)
        boxes, crop_boxes_ = self._boxes(sample, image_hash, generator)
        k, size, capacity = len(boxes), self.teacher_size, self.options.max_regions
        keys = torch.zeros(capacity + 1, dtype=torch.int64)
        keys[:k] = region_keys(image_hash, crop_boxes_, size)
        keys[-1] = region_keys(image_hash, torch.tensor([[0.0, 0.0, 1.0, 1.0]]), size)[0]
        padded = torch.zeros(capacity, 4)
        padded[:k] = boxes
        valid = torch.zeros(capacity, dtype=torch.bool)
        valid[:k] = True
        out = {"image": self._view(image, self.student_size), "crops": self._crops(image, crop_boxes_, keys[:k]),
               "boxes": padded, "valid": valid, "keys": keys}
        if self.with_global:  # only the global guard looks at the whole image at teacher size
            out["global"] = self._view(image, size)
        return out
