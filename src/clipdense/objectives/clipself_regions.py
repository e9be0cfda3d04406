"""CLIPSelf's regions and per-sample views: grid cells or the sample's boxes, student image, teacher crops.

The sample's boxes are moved into the student image by the view's geometric op (``data.transforms.Letterbox``, or
``resize`` when squashed); from there every box is in pixels of the student image. Two things leave that unit, each
once: the teacher crops are cut from the full-resolution image (the op's scale undone) and the batch holds the
boxes divided by the student side, so a multi-scale student reads them at its size of the step.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image

from ..data.sample import Sample
from ..data.transforms import Letterbox, resize
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


def usable_boxes(sample: Sample, min_size: float = 0.0, max_size: float = float("inf")) -> torch.Tensor:
    """The sample's pixel boxes clipped to the image. Boxes under a pixel on a side, or whose area is outside
    [min_size^2, max_size^2] pixels of the original image, are dropped (the official proposal variant's 8 / 1024);
    when none remain the whole image is the one region (the official code uses its top-left quarter)."""
    width, height = sample.image.size
    boxes = sample.boxes.reshape(-1, 4).float() if sample.boxes is not None else torch.zeros(0, 4)
    limit = torch.tensor([width, height, width, height], dtype=torch.float32)
    boxes = torch.minimum(boxes.clamp_min(0), limit)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    boxes = boxes[(w >= 1) & (h >= 1) & (w * h >= min_size ** 2) & (w * h <= max_size ** 2)]
    return boxes if len(boxes) else torch.tensor([[0.0, 0.0, float(width), float(height)]])


@dataclass
class ClipSelfTransform:
    """(sample, generator) -> student image, teacher crops, boxes, cache keys (padded to K).

    Regions are grid cells (``options.regions == "grid"``) or the sample's boxes, in pixels of the student image.
    Teacher crops are cut by ``clipdense.models.pooling.teacher_crops`` (RoIAlign, letterboxed by the rule of
    ``data.transforms.Letterbox``) from the normalised full-resolution image: the same crop path as the
    evaluation's ``crops`` baseline. With ``fixed_regions`` the grid is drawn from the image's hash, so every
    epoch sees the same cells and the teacher cache can serve them.
    """

    options: Any   # ClipSelfOptions (objectives.clipself); not imported here to keep the modules acyclic
    student_size: int
    teacher_size: int
    mean: Sequence[float]
    std: Sequence[float]
    fixed_regions: bool = False
    with_global: bool = True
    cached: Callable[[int], bool] | None = None   # key -> teacher embedding already cached (skip the crop)

    def _student(self, sample: Sample) -> tuple[Sample, torch.Tensor]:
        """The student's sample (S x S, its boxes in student pixels) and the (x, y, x, y) scale from the original
        image's pixels to the student's: with ``keep_aspect`` the ``Letterbox`` op (longest side resized, padded
        black at the bottom/right: CLIPSelf's ResizeLongest), otherwise the image is squashed."""
        size, (width, height) = self.student_size, sample.image.size
        if self.options.keep_aspect:
            view = Letterbox(size)
            scale = view.fit(width, height)[0]
            return view(sample), torch.tensor([scale] * 4)
        return resize(sample, (size, size)), torch.tensor([size / width, size / height] * 2)

    def _boxes(self, student: Sample, content: torch.Tensor, image_hash: int,
               generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(regions, teacher crop boxes) in student pixels; ``content`` is (w, h, w, h) of the picture in the
        student image (the letterbox's padding is no region)."""
        o = self.options
        if o.regions == "grid":
            if self.fixed_regions:
                generator = torch.Generator().manual_seed(image_hash)
            boxes = grid_boxes(generator, o.max_split, o.max_regions) * content
            return boxes, boxes
        boxes = student.boxes
        order = torch.arange(len(boxes)) if self.fixed_regions else torch.randperm(len(boxes), generator=generator)
        boxes = boxes[order[: o.max_regions]]
        return boxes, expand_boxes(boxes, o.box_expand, float(content[1]), float(content[0]))

    def _crops(self, pixels: torch.Tensor, crop_boxes_: torch.Tensor, keys: torch.Tensor,
               capacity: int, skip_cached: bool = True) -> torch.Tensor:
        """(capacity, 3, T, T) teacher crops of boxes in the full-resolution image's pixels; with ``skip_cached``,
        regions the cache already serves stay zero (only the teacher would look at them). Cut by the evaluation's
        crop path (``teacher_crops``)."""
        k, size = len(crop_boxes_), self.teacher_size
        crops = torch.zeros(capacity, 3, size, size)
        skip = self.cached if skip_cached else None
        todo = torch.tensor([skip is None or not skip(int(key)) for key in keys[:k]], dtype=torch.bool)
        if todo.any():
            crops[:k][todo] = teacher_crops(pixels[None], [crop_boxes_[todo]], size, self.mean, self.std,
                                            self.options.keep_aspect)
        return crops

    def __call__(self, sample: Sample, generator: torch.Generator) -> dict[str, torch.Tensor]:
        image = sample.image
        image_hash = image_digest(image)
        o, size, capacity = self.options, self.teacher_size, self.options.max_regions
        regions = Sample(image, sample.key, boxes=usable_boxes(sample, o.min_box_size, o.max_box_size))
        student, scale = self._student(regions)
        content = torch.tensor([image.width, image.height] * 2) * scale
        boxes, crop_boxes_ = self._boxes(student, content, image_hash, generator)
        k = len(boxes)
        keys = torch.zeros(capacity + 1, dtype=torch.int64)   # named by the box's place in the picture, any size
        keys[:k] = region_keys(image_hash, crop_boxes_ / content, size)
        keys[-1] = region_keys(image_hash, torch.tensor([[0.0, 0.0, 1.0, 1.0]]), size)[0]
        padded = torch.zeros(capacity, 4)
        valid = torch.zeros(capacity, dtype=torch.bool)
        valid[:k] = True
        padded[:k] = boxes / self.student_size
        pixels = TF.normalize(TF.to_tensor(image), list(self.mean), list(self.std))
        # the crop guard embeds the crops with the student too: then every crop is cut, cached or not
        crops = self._crops(pixels, crop_boxes_ / scale, keys[:k], capacity, skip_cached=not o.crop_guard)
        out = {"image": TF.normalize(TF.to_tensor(student.image), list(self.mean), list(self.std)), "crops": crops,
               "boxes": padded, "valid": valid, "keys": keys}
        if self.with_global:  # only the global guard looks at the whole image at teacher size
            # always cut: the student embeds this view too, so a cached teacher embedding cannot stand in for it
            # (a box expanded past the image shares the whole image's key, so the cache often holds it)
            whole = torch.tensor([[0.0, 0.0, float(image.width), float(image.height)]])
            out["global"] = self._crops(pixels, whole, keys[-1:], 1, skip_cached=False)[0]
        return out
