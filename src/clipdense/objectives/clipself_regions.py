"""CLIPSelf's regions and per-sample views: grid cells or the sample's boxes, student image, teacher crops.

Boxes travel in normalised [0, 1] x1,y1,x2,y2 coordinates so the student can run at any size.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torchvision.transforms import InterpolationMode

from ..data.sample import Sample
from ..models.pooling import expand_boxes, teacher_crops

REGION_MODES = ("grid", "boxes")


def grid_choices(max_split: int = 6) -> list[tuple[int, int]]:
    """The official grid law's (rows, cols) pairs: rows m in 1..M, cols from floor((m+1)/2) to min(2m, M)
    (24 pairs for M = 6)."""
    return [(m, n) for m in range(1, max_split + 1) for n in range((m + 1) // 2, min(2 * m, max_split) + 1)]


def grid_boxes(generator: torch.Generator, max_split: int = 6, max_regions: int = 20) -> torch.Tensor:
    """CLIPSelf's image-patch regions: a (rows, cols) pair drawn uniformly from ``grid_choices``, the image
    cut into that grid, the cells shuffled and at most K kept. Returns (k, 4) normalised boxes."""
    choices = grid_choices(max_split)
    rows, cols = choices[int(torch.randint(len(choices), (), generator=generator))]
    xs, ys = torch.linspace(0, 1, cols + 1), torch.linspace(0, 1, rows + 1)
    cells = torch.tensor([[xs[i], ys[j], xs[i + 1], ys[j + 1]] for j in range(rows) for i in range(cols)])
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


def normalised_boxes(sample: Sample, min_size: float = 0.0, max_size: float = float("inf")) -> torch.Tensor:
    """The sample's pixel boxes clipped to the image and normalised. Boxes under a pixel on a side, or whose
    area is outside [min_size^2, max_size^2], are dropped (the official proposal variant's 8 / 1024); when
    none remain the whole image is the one region (the official code uses its top-left quarter)."""
    width, height = sample.image.size
    boxes = sample.boxes.reshape(-1, 4).float() if sample.boxes is not None else torch.zeros(0, 4)
    limit = torch.tensor([width, height, width, height], dtype=torch.float32)
    boxes = torch.minimum(boxes.clamp_min(0), limit)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    boxes = boxes[(w >= 1) & (h >= 1) & (w * h >= min_size ** 2) & (w * h <= max_size ** 2)]
    if not len(boxes):
        return torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    return boxes / limit


def letterbox_scale(width: int, height: int, size: int) -> tuple[int, int]:
    """(new width, new height) of an image whose longest side is resized to ``size`` (aspect kept)."""
    scale = size / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


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
        boxes = normalised_boxes(sample, o.min_box_size, o.max_box_size)
        order = torch.arange(len(boxes)) if self.fixed_regions else torch.randperm(len(boxes), generator=generator)
        boxes = boxes[order[: o.max_regions]]
        return boxes, expand_boxes(boxes, o.box_expand, 1.0, 1.0)

    def _student(self, image: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
        """The student image (S x S) and the (x, y, x, y) factor from image-normalised to canvas-normalised
        boxes: with ``keep_aspect`` the longest side is resized and the rest padded black at the bottom/right
        (CLIPSelf's ResizeLongest); otherwise the image is squashed."""
        size = self.student_size
        if not self.options.keep_aspect:
            resized = TF.resize(image, [size, size], interpolation=InterpolationMode.BICUBIC)
            return TF.normalize(TF.to_tensor(resized), list(self.mean), list(self.std)), torch.ones(4)
        new_w, new_h = letterbox_scale(image.width, image.height, size)
        resized = TF.resize(image, [new_h, new_w], interpolation=InterpolationMode.BICUBIC)
        canvas = TF.pad(resized, [0, 0, size - new_w, size - new_h], fill=0)
        longest = max(image.width, image.height)   # exact scale, as the official code maps its boxes
        factor = torch.tensor([image.width / longest, image.height / longest] * 2)
        return TF.normalize(TF.to_tensor(canvas), list(self.mean), list(self.std)), factor

    def _crops(self, pixels: torch.Tensor, crop_boxes_: torch.Tensor, keys: torch.Tensor,
               capacity: int, skip_cached: bool = True) -> torch.Tensor:
        """(capacity, 3, T, T) teacher crops of normalised boxes; with ``skip_cached``, regions the cache already
        serves stay zero (only the teacher would look at them). Cut by the evaluation's crop path
        (``teacher_crops``)."""
        k, size = len(crop_boxes_), self.teacher_size
        crops = torch.zeros(capacity, 3, size, size)
        skip = self.cached if skip_cached else None
        todo = torch.tensor([skip is None or not skip(int(key)) for key in keys[:k]], dtype=torch.bool)
        if todo.any():
            scale = torch.tensor([pixels.shape[-1], pixels.shape[-2]] * 2, dtype=torch.float32)
            crops[:k][todo] = teacher_crops(pixels[None], [crop_boxes_[todo] * scale], size, self.mean, self.std,
                                            self.options.keep_aspect)
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
        valid = torch.zeros(capacity, dtype=torch.bool)
        valid[:k] = True
        student, factor = self._student(image)
        padded[:k] = boxes * factor
        pixels = TF.normalize(TF.to_tensor(image), list(self.mean), list(self.std))
        # the crop guard embeds the crops with the student too: then every crop is cut, cached or not
        crops = self._crops(pixels, crop_boxes_, keys[:k], capacity, skip_cached=not self.options.crop_guard)
        out = {"image": student, "crops": crops,
               "boxes": padded, "valid": valid, "keys": keys}
        if self.with_global:  # only the global guard looks at the whole image at teacher size
            # always cut: the student embeds this view too, so a cached teacher embedding cannot stand in for it
            # (a box expanded past the image shares the whole image's key, so the cache often holds it)
            whole = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
            out["global"] = self._crops(pixels, whole, keys[-1:], 1, skip_cached=False)[0]
        return out
