"""Open-vocabulary detection with a trained detector head (F-ViT / ViLD), for any class names.

    head = cd.load_head("runs/fvit", bundle)
    found = cd.detect(bundle, "photo.png", ["red circle", "blue star"], head=head)
    draw_detections(image, found).save("boxes.png")

Also: detections as COCO results JSON, and the RPN's proposals as a COCO instances JSON that
`clipdense distill --regions boxes --boxes proposals.json` distils on (CLIPSelf's region-proposal variant).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image, ImageDraw

from ..config import atomic_write_bytes
from ..data.readers import open_reader
from ..errors import ConfigError, ImageLoadError
from ..heads.detection import Detector
from .images import ImageLike, as_pil
from .overlay import palette


@dataclass
class Detections:
    """One image's detections, best first: boxes (K, 4) xyxy pixels, scores (K,), labels (K,) into ``classes``,
    and instance masks (K, H, W) bool when the head has a mask branch (F-ViT with ``mask_head``)."""

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    masks: torch.Tensor | None = None

    @classmethod
    def of(cls, result: dict[str, torch.Tensor], classes: Sequence[str]) -> "Detections":
        """From a detector head's result dict (masks, when present, binarised at 0.5)."""
        masks = (result["masks"][:, 0] >= 0.5).cpu() if "masks" in result else None
        return cls(result["boxes"].cpu(), result["scores"].cpu(), result["labels"].cpu(), list(classes), masks)

    @property
    def names(self) -> list[str]:
        return [self.classes[int(i)] for i in self.labels]

    def above(self, min_score: float) -> "Detections":
        """Only the detections scoring at least ``min_score``."""
        keep = self.scores >= min_score
        return Detections(self.boxes[keep], self.scores[keep], self.labels[keep], self.classes,
                          None if self.masks is None else self.masks[keep])

    def to_coco(self, image_id: int, category_ids: Sequence[int] | None = None) -> list[dict[str, Any]]:
        """COCO results entries (bbox as x, y, w, h); category ids default to 1 + class index. With instance masks,
        each entry also carries its ``segmentation`` as compressed RLE (counts a str), as detectron2 writes
        instance-segmentation results, so ``loadRes`` / LVISResults score them as segm."""
        out = []
        for k, (box, score, label) in enumerate(zip(self.boxes.tolist(), self.scores.tolist(), self.labels.tolist())):
            category = category_ids[label] if category_ids is not None else label + 1
            entry = {"image_id": int(image_id), "category_id": int(category), "score": round(float(score), 5),
                     "bbox": [round(box[0], 2), round(box[1], 2), round(box[2] - box[0], 2), round(box[3] - box[1], 2)]}
            if self.masks is not None:
                entry["segmentation"] = mask_rle(self.masks[k])
            out.append(entry)
        return out


def mask_rle(mask: torch.Tensor) -> dict[str, Any]:
    """(H, W) bool mask -> COCO compressed RLE with ``counts`` as an ASCII str (JSON-ready; pycocotools)."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.cpu().numpy().astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def as_detector(head: Detector | str | os.PathLike, bundle: Any) -> Detector:
    """A loaded detector head (a path is loaded on ``bundle``; another head kind is refused). A GLIP head detects
    too: the class names become its prompts."""
    from ..heads.expect import load_expected

    return load_expected(head, bundle, "detector")   # type: ignore[return-value]


def pixels(image: ImageLike) -> torch.Tensor:
    """(3, H, W) floats in [0, 1] (the detector normalises and resizes itself)."""
    if isinstance(image, torch.Tensor):
        if image.ndim != 3 or image.shape[0] != 3:
            raise ConfigError(f"image tensor: expected (3, H, W) in [0, 1], got {tuple(image.shape)}")
        return image.float()
    return TF.to_tensor(as_pil(image))


@torch.no_grad()
def detect(bundle: Any, image: ImageLike | Sequence[ImageLike], classes: Sequence[str] | None = None,
           head: Detector | str | os.PathLike | None = None, min_score: float = 0.0
           ) -> Detections | list[Detections]:
    """Boxes of ``classes`` (default: the head's trained classes) in one image or a list of images.

    Args:
        bundle: the backbone the head was trained on (``cd.load_model``); another one is refused.
        image: a path, PIL image or (3, H, W) tensor in [0, 1] (any size), or a list of them.
        classes: any class names; those the head never trained on are scored as novel.
        head: a detector head (``cd.load_head``) or its file / run dir.
        min_score: drop detections below this score.
    """
    if head is None:
        raise ConfigError("detect needs a detector head (head=...): train one with `clipdense train --objective fvit`")
    detector = as_detector(head, bundle)
    names = list(detector.classes if classes is None else classes)
    many = isinstance(image, (list, tuple))
    batch = [pixels(i).to(bundle.device) for i in (image if many else [image])]
    found = [Detections.of(r, names).above(min_score) for r in detector.detect(batch, names)]
    return found if many else found[0]


def draw_detections(image: ImageLike, detections: Detections, width: int = 2) -> Image.Image:
    """The image with each instance mask (if any) tinted and each box outlined in its class colour, labelled
    'name score'."""
    canvas = as_pil(image) if not isinstance(image, torch.Tensor) else TF.to_pil_image(image)
    canvas = canvas.copy().convert("RGB")
    colours = palette(max(len(detections.classes), 1))
    if detections.masks is not None and len(detections.masks):
        pixels_ = np.asarray(canvas, dtype=np.float32)
        for mask, label in zip(detections.masks.numpy()[::-1], detections.labels.tolist()[::-1]):  # best on top
            pixels_[mask] = 0.55 * pixels_[mask] + 0.45 * np.asarray(colours[label], dtype=np.float32)
        canvas = Image.fromarray(pixels_.round().clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for box, score, label in zip(detections.boxes.tolist(), detections.scores.tolist(), detections.labels.tolist()):
        colour = tuple(int(v) for v in colours[label])
        draw.rectangle(box, outline=colour, width=width)
        text = f"{detections.classes[label]} {score:.2f}"
        left, top = box[0], max(0.0, box[1] - 11)
        draw.rectangle([left, top, left + 6 * len(text) + 2, top + 11], fill=colour)
        draw.text((left + 1, top), text, fill="black")
    return canvas


def proposals_json(head: Detector | str | os.PathLike, bundle: Any, data: str, split: str = "train",
                   top: int = 20, batch_size: int = 8) -> dict[str, Any]:
    """The RPN's ``top`` proposals per image of ``data`` (a world's ``split``, or a COCO folder) as a COCO
    instances dict (one category, 'object'; file names as the data's, best proposal first)."""
    detector = as_detector(head, bundle)
    reader, _ = open_reader(data, {"boxes"}, split, who="proposal export")
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for chunk in _chunks(range(len(reader)), batch_size):
        samples = []
        for index in chunk:
            try:
                samples.append(reader[index])
            except ImageLoadError:
                continue
        if not samples:
            continue
        found = detector.propose([pixels(s.image).to(bundle.device) for s in samples])
        for sample, boxes in zip(samples, found):
            image_id = len(images) + 1
            images.append({"id": image_id, "file_name": sample.key, "width": sample.image.width,
                           "height": sample.image.height})
            for box in boxes[:top].cpu().tolist():
                w, h = box[2] - box[0], box[3] - box[1]
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": 1,
                                    "bbox": [round(v, 2) for v in (box[0], box[1], w, h)],
                                    "area": round(w * h, 2), "iscrowd": 0})
    return {"images": images, "annotations": annotations,
            "categories": [{"id": 1, "name": "object", "supercategory": "object"}]}


def write_json(payload: Any, path: str | os.PathLike) -> Path:
    """Write ``payload`` as JSON (atomically)."""
    path = Path(path)
    atomic_write_bytes(path, json.dumps(payload).encode())
    return path


def _chunks(items: Iterable[int], size: int) -> Iterable[list[int]]:
    chunk: list[int] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
