"""Regions (boxes + masks + thing/stuff) from COCO instances, COCO-Stuff and COCO panoptic files.

Region classification (CLIPSelf's protocol) needs, per image, every annotated region with its
category and whether it is a thing or stuff; these readers give exactly that, via pycocotools.
"""
from __future__ import annotations

import contextlib
import io
import json
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


def _xyxy(bbox: list[float]) -> list[float]:
    x, y, w, h = bbox
    return [x, y, x + w, y + h]


def _load_coco(path: str | os.PathLike) -> Any:
    from pycocotools.coco import COCO
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such COCO annotation file")
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            return COCO(str(path))
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: not a COCO annotation file ({exc.__class__.__name__}: {exc})") from exc


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
            index: CategoryIndex, with_masks: bool) -> Sample:
    width, height = image.size
    boxes = torch.tensor([r[0] for r in regions], dtype=torch.float32).reshape(-1, 4)
    masks = None
    if with_masks:
        stack = [torch.from_numpy(r[2].astype(bool)) for r in regions]
        masks = torch.stack(stack) if stack else torch.zeros((0, height, width), dtype=torch.bool)
    labels = torch.tensor([index.index[r[1]] for r in regions], dtype=torch.long)
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
        self.cocos = [(_load_coco(instances), True)] + ([(_load_coco(stuff), False)] if stuff else [])
        self.with_masks, self.include_crowd = with_masks, include_crowd
        self.skips = skip_counter if skip_counter is not None else SkipCounter()
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
        return _sample(image, info, regions, self.category_index, self.with_masks)


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
        path = Path(panoptic_json)
        try:
            doc = json.loads(path.read_text())
            self.categories = {c["id"]: c for c in doc["categories"]}
            self.images = {im["id"]: im for im in doc["images"]}
            self.annotations = sorted(doc["annotations"], key=lambda a: a["image_id"])
            self.category_index = CategoryIndex(self.categories)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{path}: expected a COCO panoptic JSON with images, annotations, categories "
                            f"({exc.__class__.__name__}: {exc})") from exc
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
        regions = []
        for seg in ann["segments_info"]:
            if seg.get("iscrowd", 0) and not self.include_crowd:
                continue
            mask = ids == seg["id"]
            if not mask.any():
                continue
            regions.append((_xyxy(seg["bbox"]), seg["category_id"], mask))
        return _sample(image, info, regions, self.category_index, True)
