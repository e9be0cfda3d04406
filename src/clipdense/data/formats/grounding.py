"""Grounding data: GLIP / MDETR's modulated-detection COCO JSON (read and written) and Flickr30k Entities.

Modulated COCO (MDETR's ``final_flickr_separateGT_*.json``, ``final_mixed_train.json``; GLIP reads the same): a COCO
file whose ``images`` carry a ``caption`` and whose ``annotations`` carry a ``bbox`` (x, y, w, h), the character
spans ``tokens_positive`` [[start, end], ...] of the phrase the box belongs to, and its ``phrase_ids``. Boxes of one
phrase share its ``phrase_ids`` (without them, the same spans). Each image is one ``Sample`` with ``caption``,
``boxes`` and ``phrases``; with ``with_masks`` also ``masks`` from the annotations' COCO ``segmentation`` (polygons
or RLE; GLIPv2's instance masks), for the images whose every box has one (the others carry no masks).

Flickr30k Entities: ``Sentences/ID.txt`` (one sentence a line, phrases marked ``[/EN#18/people A child]``) and
``Annotations/ID.xml`` (PASCAL VOC-style ``<object>`` entries whose ``<name>`` is an entity id, ``<bndbox>`` in
1-based inclusive pixel indices, read as xyxy edges (xmin - 1, ymin - 1, xmax, ymax)). Each (image, sentence) is
one ``Sample``; the mentions of one entity in a sentence form one phrase with several spans (MDETR's grouping);
entities without a box (``<nobndbox>``, scene, entity 0) are left out.

Annotations go through the shared validation layer (``data/validate.py``): one whose bbox is malformed or whose
phrase span lies outside its caption is dropped and named in the skip log (a file where nothing usable is left is
refused in one line); boxes are clipped to the image and those left thinner than a pixel are dropped and named.
"""
from __future__ import annotations

import json
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ...config import atomic_write_bytes
from ...errors import DataError
from ..images import open_image
from ..phrases import Phrases, Span
from ..sample import Sample
from ..skips import SkipCounter, SkippingDataset
from ..validate import (MALFORMED, SPAN_OUTSIDE, BoxDrops, clean_boxes, phrase_spans, require_usable,
                        segmentation_problem, skip_error)
from .lvis import decode_segmentation

ENTITY = re.compile(r"\[/EN#(\d+)/(\S+) ([^\]]*)\]")


@dataclass
class GroundedImage:
    """One image's grounding record, as the readers build and the writers take it.

    Args:
        file_name: the image file, relative to the image folder.
        width / height: its size in pixels.
        caption: the text the spans index.
        spans: per phrase, its character spans.
        boxes: per phrase, its boxes (xyxy pixels).
        segmentations: per phrase, per box, its COCO segmentation (polygons or RLE) or None; None: no masks.
    """

    file_name: str
    width: int
    height: int
    caption: str
    spans: list[list[Span]]
    boxes: list[list[list[float]]]
    segmentations: list[list[Any]] | None = None


def _masks(record: GroundedImage, width: int, height: int) -> torch.Tensor | None:
    """(N, H, W) bool masks of the record's boxes in phrase order, or None unless every box has a segmentation."""
    segs = [seg for phrase in (record.segmentations or []) for seg in phrase]
    if not segs or len(segs) != sum(len(b) for b in record.boxes) or any(seg is None for seg in segs):
        return None
    return torch.from_numpy(np.stack([decode_segmentation(seg, height, width) for seg in segs]))


def _sample(image_dir: Path, record: GroundedImage, key: str, where: str, skips: SkipCounter,
            with_masks: bool = False) -> Sample:
    image = open_image(image_dir / record.file_name)
    rows = [(box, phrase) for phrase, boxes in enumerate(record.boxes) for box in boxes]
    boxes = torch.tensor([b for b, _ in rows], dtype=torch.float32).reshape(-1, 4)
    box_phrase = torch.tensor([p for _, p in rows], dtype=torch.long)
    masks = _masks(record, image.width, image.height) if with_masks else None
    boxes, box_phrase, masks, _ = clean_boxes(boxes, box_phrase, len(record.spans), image.width, image.height,
                                              f"{where} ({record.file_name})", skips, masks, min_size=1.0)
    phrases = Phrases(record.caption, tuple(tuple(s) for s in record.spans), box_phrase)
    return Sample(image=image, key=key, caption=record.caption, boxes=boxes, phrases=phrases, masks=masks)


def _load_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DataError(f"{path}: no such modulated-COCO annotation file")
    try:
        doc = json.loads(path.read_text())
        if not isinstance(doc.get("images"), list) or not isinstance(doc.get("annotations"), list):
            raise ValueError("expected 'images' and 'annotations' lists")
        return doc
    except (OSError, ValueError, AttributeError) as exc:
        raise DataError(f"{path}: not a modulated-COCO JSON ({exc})") from exc


def _annotation(ann: dict[str, Any], caption: str) -> tuple[tuple[list[float], tuple[Span, ...]] | None, str, str]:
    """(xyxy box, its phrase's spans) of one modulated-COCO annotation, or (None, reason key, why) to drop it."""
    try:
        x, y, w, h = (float(v) for v in ann["bbox"])
    except (KeyError, TypeError, ValueError):
        return None, MALFORMED, "expected 'bbox' [x, y, w, h]"
    if ann.get("segmentation") is not None and segmentation_problem(ann["segmentation"]):
        return None, MALFORMED, f"unusable segmentation ({segmentation_problem(ann['segmentation'])})"
    spans, why = phrase_spans(caption, ann.get("tokens_positive"))
    if spans is None:
        return None, SPAN_OUTSIDE if "outside" in (why or "") else MALFORMED, why or ""
    return ([x, y, x + w, y + h], spans), "", ""


def _grouped(path: Path, image: dict[str, Any], anns: list[dict[str, Any]], skips: SkipCounter,
             drops: BoxDrops) -> GroundedImage:
    """One image's annotations as phrases (grouped by ``phrase_ids``, else by identical spans); an annotation with
    a malformed bbox or a span outside the caption is dropped, counted in ``drops`` and named in ``skips``."""
    where = f"{path} (image {image.get('id')})"
    caption = image.get("caption")
    if not isinstance(caption, str) or not caption.strip():
        raise DataError(f"{where}: expected a non-empty 'caption'")
    groups: dict[Any, int] = {}
    spans: list[list[Span]] = []
    boxes: list[list[list[float]]] = []
    segmentations: list[list[Any]] = []
    for ann in anns:
        drops.total += 1
        found, reason, why = _annotation(ann, caption)
        if found is None:
            drops.drop(reason, f"annotation {ann.get('id')}: {why}")
            skips.add(skip_error(f"{where}: annotation {ann.get('id')}", f"{why}; dropped"))
            continue
        box, checked = found
        key = ("id", json.dumps(ann.get("phrase_ids"))) if "phrase_ids" in ann else ("spans", checked)
        if key not in groups:
            groups[key] = len(spans)
            spans.append(list(checked))
            boxes.append([])
            segmentations.append([])
        boxes[groups[key]].append(box)
        segmentations[groups[key]].append(ann.get("segmentation"))
    return GroundedImage(str(image["file_name"]), int(image.get("width", 0)), int(image.get("height", 0)), caption,
                         spans, boxes, segmentations)


class ModulatedCoco(SkippingDataset):
    """Samples (image, caption, boxes, phrases; masks with ``with_masks``) of a modulated-detection COCO JSON."""

    def __init__(self, image_dir: str | os.PathLike, annotations: str | os.PathLike, *,
                 skip_counter: SkipCounter | None = None, with_masks: bool = False) -> None:
        self.image_dir, self.path, self.with_masks = Path(image_dir), Path(annotations), with_masks
        if not self.image_dir.is_dir():
            raise DataError(f"{self.image_dir}: no such image folder")
        doc = _load_json(self.path)
        self.skips = skip_counter if skip_counter is not None else SkipCounter()
        by_image: dict[Any, list[dict[str, Any]]] = {}
        drops = BoxDrops()
        for n, ann in enumerate(doc["annotations"]):
            if not isinstance(ann, dict):
                drops.total += 1
                drops.drop(MALFORMED, f"annotation {n}: not a dict")
                self.skips.add(skip_error(f"{self.path} (annotation {n})", "not a dict; dropped"))
                continue
            by_image.setdefault(ann.get("image_id"), []).append(ann)
        try:
            self.records = [_grouped(self.path, im, by_image.get(im["id"], []), self.skips, drops)
                            for im in sorted(doc["images"], key=lambda im: im["id"])]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DataError(f"{self.path}: images need 'id', 'file_name', 'caption' and integer 'width' / 'height' "
                            f"({exc.__class__.__name__}: {exc})") from exc
        require_usable(drops, str(self.path))   # every annotation dropped: one line, not a run on nothing
        if with_masks and not any(_has_masks(r) for r in self.records):
            raise DataError(f"{self.path}: no image has a 'segmentation' for every box (instance masks were asked "
                            "for, e.g. by a GLIP head with mask_head)")

    def has_boxes(self, index: int) -> bool:
        return any(self.records[index].boxes)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Sample:
        record = self.records[index]
        return _sample(self.image_dir, record, Path(record.file_name).stem, str(self.path), self.skips,
                       self.with_masks)


def _has_masks(record: GroundedImage) -> bool:
    segs = [seg for phrase in (record.segmentations or []) for seg in phrase]
    return bool(segs) and all(seg is not None for seg in segs)


def write_modulated_coco(path: str | os.PathLike, records: Sequence[GroundedImage], info: str = "") -> None:
    """Write ``records`` as a modulated-detection COCO JSON (one category 'object', as MDETR's flickr files)."""
    images, annotations = [], []
    for image_id, record in enumerate(records, start=1):
        images.append({"id": image_id, "file_name": record.file_name, "width": record.width,
                       "height": record.height, "caption": record.caption,
                       "tokens_positive_eval": [[list(s) for s in spans] for spans in record.spans]})
        segmentations = record.segmentations or [[None] * len(b) for b in record.boxes]
        for phrase, (spans, boxes, segs) in enumerate(zip(record.spans, record.boxes, segmentations)):
            for (x0, y0, x1, y1), seg in zip(boxes, segs):
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": 1,
                                    "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0),
                                    "iscrowd": 0, "tokens_positive": [list(s) for s in spans],
                                    "phrase_ids": phrase, **({"segmentation": seg} if seg is not None else {})})
    doc = {"info": {"description": info}, "images": images, "annotations": annotations,
           "categories": [{"id": 1, "name": "object", "supercategory": "object"}]}
    atomic_write_bytes(Path(path), json.dumps(doc).encode())


# ---------------------------------------------------------------------------------------------- Flickr30k Entities
def parse_sentence(line: str, where: str) -> tuple[str, list[tuple[int, list[Span]]]]:
    """A marked-up sentence -> (plain text, [(entity id, its spans)]) in first-mention order."""
    text, entities, last = "", {}, 0
    for match in ENTITY.finditer(line):
        text += line[last:match.start()]
        words = match.group(3)
        if not words.strip():
            raise DataError(f"{where}: empty phrase {match.group(0)!r}")
        entities.setdefault(int(match.group(1)), []).append((len(text), len(text) + len(words)))
        text += words
        last = match.end()
    text += line[last:]
    if "[/EN#" in text:
        raise DataError(f"{where}: unclosed phrase mark-up in {line!r}")
    return text.strip(), [(e, s) for e, s in entities.items()]


def read_entity_boxes(path: Path) -> tuple[str | None, int, int, dict[int, list[list[float]]]]:
    """(file name, width, height, entity id -> xyxy boxes) of a Flickr30k Entities XML."""
    try:
        root = ET.parse(path).getroot()
        size = root.find("size")
        width = int(size.findtext("width")) if size is not None else 0
        height = int(size.findtext("height")) if size is not None else 0
        boxes: dict[int, list[list[float]]] = {}
        for obj in root.iter("object"):
            box = obj.find("bndbox")
            if box is None:
                continue
            xyxy = [float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")]
            xyxy = [xyxy[0] - 1, xyxy[1] - 1, xyxy[2], xyxy[3]]
            for name in obj.findall("name"):
                boxes.setdefault(int(name.text), []).append(xyxy)
        return root.findtext("filename"), width, height, boxes
    except (OSError, ET.ParseError, TypeError, ValueError) as exc:
        raise DataError(f"{path}: not a Flickr30k Entities annotation ({exc.__class__.__name__}: {exc})") from exc


class Flickr30kEntities(SkippingDataset):
    """(image, sentence) samples of the Flickr30k Entities layout: ``root/Sentences``, ``root/Annotations``, images
    in ``images`` (``<filename>`` of the XML, else ``ID.jpg``); ``ids``: a file of image ids (the official
    train/val/test.txt), else every sentence file."""

    def __init__(self, root: str | os.PathLike, images: str | os.PathLike, ids: str | os.PathLike | None = None,
                 *, skip_counter: SkipCounter | None = None) -> None:
        self.root, self.image_dir = Path(root), Path(images)
        for folder in (self.root / "Sentences", self.root / "Annotations", self.image_dir):
            if not folder.is_dir():
                raise DataError(f"{folder}: no such folder (Flickr30k Entities: root=DIR with Sentences/ and "
                                "Annotations/, images=DIR)")
        if ids:
            try:
                names = [line.strip() for line in Path(ids).read_text().splitlines() if line.strip()]
            except OSError as exc:
                raise DataError(f"{ids}: cannot read the image id list ({exc})") from exc
        else:
            names = sorted(p.stem for p in (self.root / "Sentences").glob("*.txt"))
        self.records: list[tuple[str, GroundedImage]] = []
        for name in names:
            self.records.extend(self._image(name))
        self.skips = skip_counter if skip_counter is not None else SkipCounter()

    def _image(self, name: str) -> list[tuple[str, GroundedImage]]:
        sentences = self.root / "Sentences" / f"{name}.txt"
        try:
            lines = [line for line in sentences.read_text(encoding="utf-8").splitlines() if line.strip()]
        except OSError as exc:
            raise DataError(f"{sentences}: cannot read ({exc})") from exc
        file_name, width, height, boxes = read_entity_boxes(self.root / "Annotations" / f"{name}.xml")
        out = []
        for number, line in enumerate(lines):
            text, entities = parse_sentence(line, f"{sentences}:{number + 1}")
            grounded = [(spans, boxes[e]) for e, spans in entities if e != 0 and boxes.get(e)]
            record = GroundedImage(file_name or f"{name}.jpg", width, height, text, [g[0] for g in grounded],
                                   [g[1] for g in grounded])
            out.append((f"{name}#{number}", record))
        return out

    def has_boxes(self, index: int) -> bool:
        return any(self.records[index][1].boxes)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Sample:
        key, record = self.records[index]
        return _sample(self.image_dir, record, key, str(self.root / "Annotations"), self.skips)


def _markup(record: GroundedImage, entity_ids: list[int]) -> str:
    """The sentence with each phrase's spans wrapped as ``[/EN#id/other words]``."""
    marks = sorted((s, e, entity_ids[p]) for p, spans in enumerate(record.spans) for s, e in spans)
    out, last = "", 0
    for start, end, entity in marks:
        out += record.caption[last:start] + f"[/EN#{entity}/other {record.caption[start:end]}]"
        last = end
    return out + record.caption[last:]


def write_flickr30k_entities(root: str | os.PathLike, name: str, records: Sequence[GroundedImage]) -> None:
    """Write one image's sentences (``records`` share the image) as ``root/Sentences/NAME.txt`` and its boxes as
    ``root/Annotations/NAME.xml`` (one ``<object>`` per box; identical boxes of several entities share one)."""
    root = Path(root)
    first = records[0]
    objects: dict[tuple[float, ...], list[int]] = {}
    lines, next_id = [], 1
    for record in records:
        ids = list(range(next_id, next_id + len(record.spans)))
        next_id += len(record.spans)
        lines.append(_markup(record, ids))
        for entity, boxes in zip(ids, record.boxes):
            for box in boxes:
                objects.setdefault(tuple(box), []).append(entity)
    xml = ET.Element("annotation")
    ET.SubElement(xml, "filename").text = first.file_name
    size = ET.SubElement(xml, "size")
    for key, value in (("width", first.width), ("height", first.height), ("depth", 3)):
        ET.SubElement(size, key).text = str(value)
    for box, entities in objects.items():
        obj = ET.SubElement(xml, "object")
        for entity in entities:
            ET.SubElement(obj, "name").text = str(entity)
        bndbox = ET.SubElement(obj, "bndbox")
        x0, y0, x1, y1 = box
        for key, value in (("xmin", x0 + 1), ("ymin", y0 + 1), ("xmax", x1), ("ymax", y1)):
            ET.SubElement(bndbox, key).text = str(int(round(value)))
    (root / "Sentences").mkdir(parents=True, exist_ok=True)
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(root / "Sentences" / f"{name}.txt", ("\n".join(lines) + "\n").encode())
    atomic_write_bytes(root / "Annotations" / f"{name}.xml", ET.tostring(xml, encoding="utf-8"))
