"""Regions (boxes + masks + thing/stuff) from COCO instances, COCO-Stuff and COCO panoptic files.

Region classification (CLIPSelf's protocol) needs, per image, every annotated region with its
category and whether it is a thing or stuff; these readers give exactly that, via pycocotools.
"""
from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ...errors import DataError, ImageLoadError
from ..images import open_image
from ..sample import Sample
from ..skips import SkipCounter, SkippingDataset
from ..validate import check_size, clean_boxes, coco_document, read_json, require_usable, skip_error


def _number_list4(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 4 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)


def _xyxy(bbox: list[float]) -> list[float]:
    x, y, w, h = bbox
    return [x, y, x + w, y + h]


def _load_coco(path: str | os.PathLike, segments: bool = False, skips: SkipCounter | None = None) -> Any:
    """pycocotools' index of a COCO file checked by ``validate.coco_document`` (structure refused in one line,
    unusable annotations dropped and named in ``skips``; DataError when none is left)."""
    from pycocotools.coco import COCO
    doc, drops = coco_document(path, segments=segments, skips=skips)
    require_usable(drops, str(path))
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            coco = COCO()
            coco.dataset = doc
            coco.createIndex()
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: not a COCO annotation file ({exc.__class__.__name__}: {exc})") from exc
    coco.path = str(path)
    return coco


class CategoryIndex:
    """COCO category ids <-> the contiguous class indices ``Sample.labels`` use (sorted by id)."""

    def __init__(self, categories: dict[int, dict[str, Any]]) -> None:
        self.ids = sorted(categories)
        self.index = {cid: i for i, cid in enumerate(self.ids)}
        self.classes = [str(categories[cid]["name"]) for cid in self.ids]
        self.isthing = torch.tensor([bool(categories[cid].get("isthing", 1)) for cid in self.ids], dtype=torch.bool)

    def names(self, labels: torch.Tensor) -> list[str]:
        """Class names of a sample's labels."""
        return [self.classes[int(i)] for i in labels]


class CategorisedReader(SkippingDataset):
    """A reader whose labels index ``classes`` (COCO categories sorted by id), with thing/stuff per class."""

    category_index: CategoryIndex

    @property
    def classes(self) -> list[str]:
        return self.category_index.classes

    @property
    def isthing(self) -> torch.Tensor:
        return self.category_index.isthing


def _sample(image: Image.Image, info: dict, regions: list[tuple[list[float], int, np.ndarray | None]],
            index: CategoryIndex, with_masks: bool, where: str, skips: SkipCounter | None = None) -> Sample:
    """The image's regions through ``validate``: masks of the image's size, boxes clipped to the image, unusable
    ones dropped and named in ``skips``."""
    width, height = image.size
    boxes = torch.tensor([r[0] for r in regions], dtype=torch.float32).reshape(-1, 4)
    masks = None
    if with_masks:
        for region in regions:
            check_size(region[2].shape, width, height, where)
        stack = [torch.from_numpy(r[2].astype(bool)) for r in regions]
        masks = torch.stack(stack) if stack else torch.zeros((0, height, width), dtype=torch.bool)
    labels = torch.tensor([index.index.get(r[1], -1) if isinstance(r[1], int) else -1 for r in regions],
                          dtype=torch.long)
    boxes, labels, masks, _ = clean_boxes(boxes, labels, len(index.ids), width, height, where, skips, masks)
    return Sample(image=image, key=str(info["file_name"]), boxes=boxes, labels=labels, masks=masks)


class CocoRegions(CategorisedReader):
    """Things from a COCO instances file, plus stuff from an optional COCO-Stuff file (same images).

    Yields ``Sample``s with boxes, labels (indices into ``classes``, categories sorted by id) and,
    with ``with_masks``, instance masks; ``isthing[label]`` says whether a class is a thing.

    Categories with ``isthing: 0`` in the instances file count as stuff too. Crowd annotations are
    left out unless ``include_crowd``. Masks come from polygons or RLE alike (pycocotools annToMask).
    """

    def __init__(self, image_dir: str | os.PathLike, instances: str | os.PathLike,
                 stuff: str | os.PathLike | None = None, *, with_masks: bool = True,
                 include_crowd: bool = False, skip_counter: SkipCounter | None = None) -> None:
        self.image_dir = Path(image_dir)
        if not self.image_dir.is_dir():
            raise DataError(f"{self.image_dir}: no such image folder")
        self.skips = skip_counter if skip_counter is not None else SkipCounter()
        self.cocos = [(_load_coco(instances, with_masks, self.skips), True)] + (
            [(_load_coco(stuff, with_masks, self.skips), False)] if stuff else [])
        self.with_masks, self.include_crowd = with_masks, include_crowd
        self.categories: dict[int, dict[str, Any]] = {}
        for coco, thing_file in self.cocos:
            for cat in coco.loadCats(coco.getCatIds()):
                isthing = bool(cat.get("isthing", 1)) and thing_file
                self.categories.setdefault(cat["id"], {**cat, "isthing": int(isthing)})
        self.image_ids = sorted(self.cocos[0][0].getImgIds())
        self.category_index = CategoryIndex(self.categories)

    def has_boxes(self, index: int) -> bool:
        """Whether image ``index`` has at least one (non-crowd) annotation, without decoding it."""
        image_id = self.image_ids[index]
        return any(bool(coco.getAnnIds(imgIds=image_id, iscrowd=None if self.include_crowd else False))
                   for coco, _ in self.cocos if image_id in coco.imgs)

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int) -> Sample:
        image_id = self.image_ids[index]
        info = self.cocos[0][0].loadImgs(image_id)[0]
        image = open_image(self.image_dir / info["file_name"])
        regions = []
        for coco, thing_file in self.cocos:
            if image_id not in coco.imgs:
                continue
            for ann in coco.loadAnns(coco.getAnnIds(imgIds=image_id, iscrowd=None)):
                if ann.get("iscrowd", 0) and not self.include_crowd:
                    continue
                mask = coco.annToMask(ann) if self.with_masks else None
                regions.append((_xyxy(ann["bbox"]), ann["category_id"], mask))
        where = f"{self.cocos[0][0].path} (image {info['file_name']})"
        return _sample(image, info, regions, self.category_index, self.with_masks, where, self.skips)


def panoptic_ids(path: str | os.PathLike) -> np.ndarray:
    """Segment ids of a COCO panoptic PNG (id = R + 256 G + 256^2 B)."""
    with Image.open(path) as handle:
        rgb = np.asarray(handle.convert("RGB"), dtype=np.uint32)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


class CocoPanopticRegions(CategorisedReader):
    """Things and stuff segments of a COCO panoptic JSON + PNG folder, as regions."""

    def __init__(self, image_dir: str | os.PathLike, panoptic_json: str | os.PathLike,
                 panoptic_dir: str | os.PathLike, *, include_crowd: bool = False,
                 skip_counter: SkipCounter | None = None) -> None:
        self.image_dir, self.panoptic_dir = Path(image_dir), Path(panoptic_dir)
        self.path = Path(panoptic_json)
        doc = read_json(self.path, "COCO panoptic JSON")
        expected = "expected a COCO panoptic JSON with images, annotations, categories"
        try:
            self.categories = {c["id"]: c for c in doc["categories"]}
            self.images = {im["id"]: im for im in doc["images"]}
            self.annotations = sorted((a for a in doc["annotations"] if a["image_id"] in self.images),
                                      key=lambda a: a["image_id"])
            if not all(isinstance(a["file_name"], str) and isinstance(a["segments_info"], list)
                       for a in self.annotations):
                raise TypeError("an annotation without file_name and a segments_info list")
            self.category_index = CategoryIndex(self.categories)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DataError(f"{self.path}: {expected} ({exc.__class__.__name__}: {exc})") from None
        if not self.annotations and doc["annotations"]:
            raise DataError(f"{self.path}: every annotation names an image_id that is not in 'images'")
        self.include_crowd = include_crowd
        self.skips = skip_counter if skip_counter is not None else SkipCounter()

    def __len__(self) -> int:
        return len(self.annotations)

    def __getitem__(self, index: int) -> Sample:
        ann = self.annotations[index]
        info = self.images[ann["image_id"]]
        image = open_image(self.image_dir / info["file_name"])
        png = self.panoptic_dir / ann["file_name"]
        try:
            ids = panoptic_ids(png)
        except (OSError, ValueError) as exc:
            raise ImageLoadError(f"{png}: unreadable panoptic PNG ({exc})") from exc
        where = f"{self.path} (image {info['file_name']})"
        check_size(ids.shape, image.width, image.height, f"{png}", "panoptic PNG")
        regions = []
        for seg in ann["segments_info"]:
            if not isinstance(seg, dict) or not _number_list4(seg.get("bbox")) or "id" not in seg:
                self.skips.add(skip_error(where, f"segment {seg!r:.60} without an id and a bbox of 4 numbers; "
                                                 "dropped"))
                continue
            if seg.get("iscrowd", 0) and not self.include_crowd:
                continue
            mask = ids == seg["id"]
            if not mask.any():
                self.skips.add(skip_error(where, f"segment {seg['id']} has no pixel in {png.name}; dropped"))
                continue
            regions.append((_xyxy(seg["bbox"]), seg.get("category_id"), mask))
        return _sample(image, info, regions, self.category_index, True, where, self.skips)
