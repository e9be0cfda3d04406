"""LVIS v1 instances (Gupta et al., CVPR 2019): boxes, masks and federated labels of a long-tailed vocabulary.

``--data lvis:images=ROOT,annotations=lvis_v1_val.json``. The JSON is COCO-like, with what LVIS adds:
- categories carry ``frequency`` (``r`` rare: 1-10 training images, ``c`` common: 11-100, ``f`` frequent: > 100);
  names use underscores (``aerosol_can``), read here as words (``aerosol can``) for text prompts;
- images carry ``neg_category_ids`` (checked, absent) and ``not_exhaustive_category_ids`` (present, not every
  instance boxed): the federated annotation, given to each ``Sample`` as ``federated``;
- images have no ``file_name`` but a ``coco_url`` (``.../train2017/000000391895.jpg``): the file is looked up as
  ``ROOT/train2017/000000391895.jpg``, then ``ROOT/000000391895.jpg``; a ``file_name``, when there is one, wins.

``held_out`` = the rare classes: OV-LVIS's novel classes (Gu et al. 2022, ViLD; F-ViT / CLIPSelf), which
``open_data`` reports as the data's novel classes, so a detector trained on LVIS never trains on them.

Annotations are checked at open (box within its image, known category; with masks, a segmentation
``data/validate.py`` can decode at the image's size); each drop is counted and named through ``SkipCounter``.
"""
from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...errors import DataError
from ..federated import Federated
from ..images import load_error, open_image
from ..sample import Sample
from ..skips import SkipCounter
from ..validate import segmentation_problem
from .coco import CategorisedReader, CategoryIndex

#: LVIS's frequency buckets, in the order its evaluation groups them (APr, APc, APf)
FREQUENCIES: tuple[str, ...] = ("r", "c", "f")
RARE_MAX, COMMON_MAX = 10, 100


def frequency_of(image_count: int) -> str:
    """LVIS's bucket of a class seen in ``image_count`` training images: r (<= 10), c (11-100), f (> 100)."""
    return "r" if image_count <= RARE_MAX else "c" if image_count <= COMMON_MAX else "f"


def class_word(name: str) -> str:
    """An LVIS category name as words for a prompt (``aerosol_can`` -> ``aerosol can``)."""
    return name.replace("_", " ").strip()


def image_path(root: Path, info: dict[str, Any]) -> Path:
    """Where an LVIS image lives under ``root``: its ``file_name``, else ``coco_url``'s split folder + name,
    else the bare name (the first that exists; the folder form when none does)."""
    if info.get("file_name"):
        return root / str(info["file_name"])
    url = str(info.get("coco_url", ""))
    parts = [p for p in url.split("/") if p][-2:]
    if not parts:
        raise DataError(f"LVIS image {info.get('id')!r}: neither file_name nor coco_url")
    candidates = [root.joinpath(*parts), root / parts[-1]]
    return next((c for c in candidates if c.is_file()), candidates[0])


def _check_document(doc: Any, path: Path) -> None:
    if not isinstance(doc, dict) or any(not isinstance(doc.get(k), list)
                                        for k in ("images", "annotations", "categories")):
        raise DataError(f"{path}: expected an LVIS JSON dict with 'images', 'annotations' and 'categories' lists")
    for n, cat in enumerate(doc["categories"]):
        if not isinstance(cat, dict) or not isinstance(cat.get("id"), int) or "name" not in cat:
            raise DataError(f"{path}: category {n} is not a dict with an integer 'id' and a 'name'")
        if cat.get("frequency", "r") not in FREQUENCIES:
            raise DataError(f"{path}: category {cat['name']!r} has frequency {cat.get('frequency')!r}; expected "
                            f"one of {', '.join(FREQUENCIES)}")
    for n, image in enumerate(doc["images"]):
        if not isinstance(image, dict) or not isinstance(image.get("id"), int) or \
                not (image.get("file_name") or image.get("coco_url")):
            raise DataError(f"{path}: image {n} is not a dict with an integer 'id' and a file_name or coco_url")


def _frequencies(doc: dict[str, Any]) -> dict[int, str]:
    """Each category's bucket: its ``frequency``, else from its ``image_count``, else from this file's own
    annotations (images per category)."""
    counted: dict[int, set] = defaultdict(set)
    for ann in doc["annotations"]:
        if isinstance(ann, dict):
            counted[ann.get("category_id")].add(ann.get("image_id"))
    out = {}
    for cat in doc["categories"]:
        if cat.get("frequency") in FREQUENCIES:
            out[cat["id"]] = cat["frequency"]
        else:
            out[cat["id"]] = frequency_of(int(cat.get("image_count", len(counted[cat["id"]]))))
    return out


def _box(ann: Any, image: dict[str, Any] | None, categories: dict[int, Any]) -> tuple[list[float] | None, str]:
    """The annotation's xyxy box clipped to its image, or None and why it cannot be used."""
    if not isinstance(ann, dict) or image is None:
        return None, "names no image of the file"
    if ann.get("category_id") not in categories:
        return None, f"has category_id {ann.get('category_id')!r}, not in 'categories'"
    bbox = ann.get("bbox")
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(isinstance(v, (int, float)) for v in bbox):
        return None, "has no bbox [x, y, w, h]"
    x, y, w, h = (float(v) for v in bbox)
    width, height = float(image.get("width", np.inf)), float(image.get("height", np.inf))
    box = [max(x, 0.0), max(y, 0.0), min(x + w, width), min(y + h, height)]
    if not all(np.isfinite([x, y, w, h])) or box[2] <= box[0] or box[3] <= box[1]:
        return None, f"has a box with no area inside its {width:g}x{height:g} image ({bbox})"
    return box, ""


def _mask_checked(box: list[float], seg: Any, image: dict[str, Any]) -> tuple[list[float] | None, str]:
    """``box``, or None and why the annotation's segmentation cannot become a mask of its image."""
    why = segmentation_problem(seg)
    size = [image.get("height"), image.get("width")]
    if why is None and isinstance(seg, dict) and list(seg["size"]) != size:
        why = f"segmentation RLE of size {seg['size']}, its image is {size[0]}x{size[1]} (h x w)"
    return (None, f"has an unusable {why}") if why else (box, "")


def decode_segmentation(segmentation: Any, height: int, width: int) -> np.ndarray:
    """(H, W) bool mask of polygons, an uncompressed RLE or a compressed RLE (pycocotools)."""
    from pycocotools import mask as mask_utils
    if isinstance(segmentation, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    elif isinstance(segmentation, dict):
        rle = dict(segmentation)
        if isinstance(rle["counts"], str):
            rle["counts"] = rle["counts"].encode("ascii")
    else:
        raise ValueError("segmentation is neither polygons nor an RLE dict")
    return mask_utils.decode(rle).astype(bool)


class LvisRegions(CategorisedReader):
    """An LVIS v1 JSON + its image folder as ``Sample``s: boxes, labels (categories sorted by id), masks (with
    ``with_masks``) and ``federated`` (negative / not-exhaustive classes as label indices).

    Args:
        image_dir: the folder holding ``train2017/`` and ``val2017/`` (or the images themselves).
        annotations: ``lvis_v1_{train,val}.json``.
        with_masks: decode instance masks (polygons or RLE).
    """

    def __init__(self, image_dir: str | os.PathLike, annotations: str | os.PathLike, *, with_masks: bool = True,
                 skip_counter: SkipCounter | None = None) -> None:
        self.image_dir, self.path = Path(image_dir), Path(annotations)
        if not self.image_dir.is_dir():
            raise DataError(f"{self.image_dir}: no such image folder")
        doc = _read(self.path)
        _check_document(doc, self.path)
        self.with_masks = with_masks
        self.skips = skip_counter if skip_counter is not None else SkipCounter()
        frequency = _frequencies(doc)
        self.categories = {c["id"]: {**c, "name": class_word(str(c["name"])), "isthing": 1}
                           for c in doc["categories"]}
        self.category_index = CategoryIndex(self.categories)
        self.frequency = tuple(frequency[cid] for cid in self.category_index.ids)
        self.images = {im["id"]: im for im in doc["images"]}
        self.image_ids = sorted(self.images)
        self.annotations = self._usable(doc["annotations"])

    def _usable(self, annotations: list[Any]) -> dict[int, list[tuple[list[float], int, Any]]]:
        """image id -> [(xyxy box, category id, segmentation)] of the usable annotations; the rest named."""
        found: dict[int, list] = defaultdict(list)
        dropped = 0
        for n, ann in enumerate(annotations):
            image = self.images.get(ann.get("image_id")) if isinstance(ann, dict) else None
            box, why = _box(ann, image, self.categories)
            if box is not None and self.with_masks:
                box, why = _mask_checked(box, ann.get("segmentation"), image)
            if box is None:
                dropped += 1
                ident = ann.get("id", n) if isinstance(ann, dict) else n
                self.skips.add(load_error(f"{self.path} (annotation {ident})", f"annotation {why}; dropped"))
                continue
            found[ann["image_id"]].append((box, ann["category_id"], ann.get("segmentation")))
        if annotations and dropped == len(annotations):
            raise DataError(f"{self.path}: none of its {dropped} annotations is usable (see the skipped files)")
        return found

    @property
    def held_out(self) -> tuple[str, ...]:
        """The rare classes: OV-LVIS's novel classes, never trained on."""
        return tuple(c for c, f in zip(self.classes, self.frequency) if f == "r")

    def has_boxes(self, index: int) -> bool:
        """Whether image ``index`` has an annotation (without decoding it)."""
        return bool(self.annotations.get(self.image_ids[index]))

    def __len__(self) -> int:
        return len(self.image_ids)

    def _federated(self, info: dict[str, Any]) -> Federated:
        index = self.category_index.index
        return Federated.of([index[c] for c in info.get("neg_category_ids", []) if c in index],
                            [index[c] for c in info.get("not_exhaustive_category_ids", []) if c in index])

    def __getitem__(self, index: int) -> Sample:
        info = self.images[self.image_ids[index]]
        path = image_path(self.image_dir, info)
        image = open_image(path)
        width, height = image.size
        regions = self.annotations.get(info["id"], [])
        boxes = torch.tensor([r[0] for r in regions], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
        labels = torch.tensor([self.category_index.index[r[1]] for r in regions], dtype=torch.long)
        masks = None
        if self.with_masks:
            try:
                stack = [torch.from_numpy(decode_segmentation(r[2], height, width)) for r in regions]
            except (ValueError, TypeError, KeyError) as exc:
                raise load_error(str(path), f"undecodable segmentation in {self.path.name} ({exc})") from None
            if any(tuple(m.shape) != (height, width) for m in stack):
                raise load_error(str(path), f"a mask does not match its image {width}x{height}")
            masks = torch.stack(stack) if stack else torch.zeros((0, height, width), dtype=torch.bool)
        key = str(path.relative_to(self.image_dir)) if path.is_relative_to(self.image_dir) else path.name
        return Sample(image=image, key=key, boxes=boxes, labels=labels, masks=masks,
                      federated=self._federated(info))


def _read(path: Path) -> Any:
    import json
    if not path.is_file():
        raise DataError(f"{path}: no such LVIS annotation file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{path}: not a readable LVIS JSON ({exc.__class__.__name__}: {exc})") from None
