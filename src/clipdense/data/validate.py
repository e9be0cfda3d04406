"""One validation layer for annotations, shared by every reader: what a file says is checked, never trusted.

Readers hand their boxes, class ids, masks and label maps to these functions before a ``Sample`` is made:

- class ids must lie within the reader's class list (a box of an unknown category is dropped, a label-map pixel
  beyond the list becomes ``ignore_index``);
- boxes are clipped to their image; a box that is non-finite, lies wholly outside the image or has no area once
  clipped is dropped;
- masks and label / depth maps must have their image's size (else the sample is skipped);

and every drop is **counted and named** through ``data/skips.py`` (one ``file<TAB>reason`` line of
``skipped_files.tsv`` per drop, like an unreadable image). When nothing usable is left, ``require_usable`` refuses
in one line (``every box in X.json lies outside its image``) instead of training on nothing.

A sample that cannot be used at all is refused with ``skip_error`` (an ``ImageLoadError``, which readers' callers
already skip and count); a file whose structure is wrong (``coco_document``: JSON that is not a COCO dict) is a
``DataError``, one line, at open.
"""
from __future__ import annotations

import json
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import DataError, ImageLoadError
from .images import load_error
from .skips import SkipCounter

#: why a box is dropped (the keys of ``BoxDrops.reasons``), in the order messages list them
OUTSIDE, EMPTY, NONFINITE, UNKNOWN_CLASS, MALFORMED, THIN, SPAN_OUTSIDE = (
    "lies outside its image", "has zero or negative size", "has a non-finite coordinate",
    "has a category not in the class list", "is malformed", "is thinner than its minimum size once clipped",
    "has a phrase span outside its caption")
DROP_REASONS: tuple[str, ...] = (OUTSIDE, EMPTY, NONFINITE, UNKNOWN_CLASS, MALFORMED, THIN, SPAN_OUTSIDE)


def skip_error(where: str, reason: str) -> ImageLoadError:
    """A skip for one sample or annotation: an ImageLoadError carrying file and reason apart (see ``skip_record``)."""
    return load_error(where, reason)


def _note(skips: SkipCounter | None, where: str, reason: str) -> None:
    if skips is not None:
        skips.add(skip_error(where, reason))


@dataclass
class BoxDrops:
    """How many boxes a reader dropped and why (for ``require_usable``'s one line)."""

    total: int = 0
    reasons: Counter = field(default_factory=Counter)
    first: str = ""   # the first drop's message (the refusal quotes it)

    def drop(self, reason: str, message: str) -> None:
        self.reasons[reason] += 1
        self.first = self.first or message

    @property
    def dropped(self) -> int:
        return sum(self.reasons.values())

    def merge(self, other: "BoxDrops") -> None:
        self.total += other.total
        self.reasons.update(other.reasons)
        self.first = self.first or other.first


def box_problem(box: Sequence[float], width: float | None, height: float | None) -> str | None:
    """Why an xyxy box cannot be used in a ``width`` x ``height`` image (None: usable once clipped).

    Sizes of None skip the image test (a file that does not say its image's size)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        return NONFINITE
    if x1 <= x0 or y1 <= y0:
        return EMPTY
    if width is not None and height is not None:
        if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
            return OUTSIDE
    return None


def clean_boxes(boxes: torch.Tensor, labels: torch.Tensor, num_classes: int, width: int, height: int,
                where: str, skips: SkipCounter | None = None, masks: torch.Tensor | None = None,
                min_size: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, BoxDrops]:
    """Boxes (N, 4) xyxy clipped to the image, without those that cannot be used; labels and masks follow.

    A box is dropped when it is non-finite, has no area, lies wholly outside the image (no area once clipped),
    is thinner than ``min_size`` pixels once clipped, or its label is not in ``[0, num_classes)``; each drop is
    named in ``skips`` as ``where`` + the box.
    """
    boxes = boxes.reshape(-1, 4).to(torch.float32)
    labels = labels.reshape(-1).to(torch.long)
    if len(labels) != len(boxes) or (masks is not None and len(masks) != len(boxes)):
        raise skip_error(where, f"{len(boxes)} boxes but {len(labels)} labels"
                         + ("" if masks is None else f" and {len(masks)} masks"))
    drops, keep = BoxDrops(total=len(boxes)), []
    clipped = boxes.clone()
    if len(boxes):
        clipped[:, 0::2] = boxes[:, 0::2].clamp(0, width)
        clipped[:, 1::2] = boxes[:, 1::2].clamp(0, height)
    for i, (box, label) in enumerate(zip(boxes.tolist(), labels.tolist())):
        problem = box_problem(box, width, height)
        if problem is None and not 0 <= label < num_classes:
            problem = UNKNOWN_CLASS
        if problem is None and box_problem(clipped[i].tolist(), None, None) is not None:
            problem = OUTSIDE   # touches the image on an edge only: no area inside it
        x0, y0, x1, y1 = clipped[i].tolist()
        if problem is None and min(x1 - x0, y1 - y0) < min_size:
            problem = THIN
        if problem is None:
            keep.append(i)
            continue
        detail = f"class index {label} of {num_classes}" if problem == UNKNOWN_CLASS else \
            f"[{', '.join(f'{v:g}' for v in box)}] in a {width}x{height} image" + \
            (f", minimum {min_size:g} px" if problem == THIN else "")
        drops.drop(problem, f"box {problem} ({detail})")
        _note(skips, where, f"box {problem} ({detail}); dropped")
    index = torch.tensor(keep, dtype=torch.long)
    return clipped[index], labels[index], None if masks is None else masks[index], drops


def require_usable(drops: BoxDrops, what: str, noun: str = "box") -> None:
    """Refuse in one line when every box (or ``noun``: row, shape) of ``what`` was dropped (DataError naming the
    reason(s) and the first drop)."""
    if drops.total == 0 or drops.dropped < drops.total:
        return
    example = f"; first: {drops.first}" if drops.first else ""
    if len(drops.reasons) == 1:
        reason = next(iter(drops.reasons))
        raise DataError(f"every {noun} in {what} {reason} ({drops.total} of {drops.total}); nothing usable is left"
                        + example)
    parts = ", ".join(f"{drops.reasons[r]} {r}" for r in (*DROP_REASONS, *sorted(set(drops.reasons) -
                                                                               set(DROP_REASONS))) if drops.reasons[r])
    raise DataError(f"no usable {noun} in {what}: of {drops.total}, {parts}{example}")


def check_size(array_hw: tuple[int, ...], width: int, height: int, where: str, what: str = "mask") -> None:
    """A mask / label map / depth map of the image's size, else a skip naming both sizes."""
    if tuple(array_hw[-2:]) != (height, width):
        h, w = array_hw[-2:]
        raise skip_error(where, f"{what} {w}x{h} does not match its image {width}x{height}")


def clean_semantic(label: np.ndarray, num_classes: int, ignore_index: int, width: int, height: int,
                   where: str, skips: SkipCounter | None = None) -> torch.Tensor:
    """A label map (H, W) of class indices: the image's size, ids beyond ``[0, num_classes)`` made
    ``ignore_index`` and counted (one named skip per map), refused (skip) when no labelled pixel is left."""
    check_size(label.shape, width, height, where, "label map")
    label = np.asarray(label, dtype=np.int64)
    bad = ((label < 0) | (label >= num_classes)) & (label != ignore_index)
    count = int(bad.sum())
    if count:
        largest = int(label[bad].max())
        label = label.copy()
        label[bad] = ignore_index
        if not (label != ignore_index).any():
            raise skip_error(where, f"no pixel has a class id within the {num_classes} classes (ids up to "
                             f"{largest}); wrong class list or label offset?")
        _note(skips, where, f"{count} pixel(s) with class ids beyond the {num_classes} classes (up to {largest}) "
                            "set to ignore")
    elif not (label != ignore_index).any():
        raise skip_error(where, "no labelled pixel (every pixel is ignore_index)")
    return torch.from_numpy(label)


def probe_label_maps(maps: Sequence[np.ndarray], num_classes: int, ignore_index: int, what: str) -> None:
    """Refuse (DataError) when every probed label map has ids only beyond the class list: a wrong class file or
    label offset would otherwise train at loss 0 on all-ignore targets."""
    largest, usable = -1, False
    for label in maps:
        valid = (label >= 0) & (label < num_classes)
        usable = usable or bool(valid.any())
        other = label[(label != ignore_index) & ~valid]
        largest = max(largest, int(other.max()) if other.size else -1)
    if maps and not usable and largest >= 0:
        raise DataError(f"every class id in {what} lies beyond the {num_classes} classes (ids up to {largest}); "
                        "expected ids 0..{0} (a wrong class-name file, or reduce_zero_label?)".format(num_classes - 1))


def as_skip(error: DataError, where: str) -> ImageLoadError:
    """A DataError about one sample's file as a counted, named skip (an ImageLoadError passes as it is): one broken
    mesh or sound among thousands is skipped like a corrupt image, not the end of a run."""
    if isinstance(error, ImageLoadError):
        return error
    text = str(error)
    return skip_error(where, text[len(where) + 2:] if text.startswith(f"{where}: ") else text)


def finite_signal(samples: np.ndarray, where: str, what: str = "sound") -> np.ndarray:
    """``samples`` when every value is finite, else a skip naming how many are not (a float WAV can hold NaN)."""
    bad = int((~np.isfinite(samples)).sum())
    if bad:
        raise skip_error(where, f"{what} with {bad} non-finite sample(s) of {samples.size}")
    return samples


def span_problem(text: str, span: Any) -> str | None:
    """Why ``span`` is not a character span [start, end) of ``text`` (None: it is)."""
    if not isinstance(span, (list, tuple)) or len(span) != 2 or \
            not all(isinstance(v, int) and not isinstance(v, bool) for v in span):
        return f"span {span!r}: expected [start, end] integers"
    start, end = span
    if not 0 <= start < end <= len(text):
        return f"span [{start}, {end}] is outside the caption ({len(text)} characters: {text!r})"
    return None


def phrase_spans(text: str, spans: Any) -> tuple[tuple[tuple[int, int], ...] | None, str | None]:
    """(the spans of one phrase as tuples, None) when each lies within ``text``, else (None, why): a grounding
    annotation whose phrase points outside its caption is dropped and named by its reader, never trusted."""
    if not isinstance(spans, (list, tuple)) or not spans:
        return None, f"tokens_positive {spans!r}: expected a non-empty list of [start, end] spans"
    for span in spans:
        why = span_problem(text, span)
        if why is not None:
            return None, why
    return tuple((int(s), int(e)) for s, e in spans), None


# --- COCO documents ---------------------------------------------------------------------------------------------

def _number_list(value: Any, length: int | None = None) -> bool:
    return isinstance(value, list) and (length is None or len(value) == length) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)


def rle_counts(text: str) -> list[int] | None:
    """The run lengths of a compressed COCO RLE string (pycocotools' ``rleFrString`` in Python, with bounds: its
    C version reads past the end of a cut string), or None when the string is malformed."""
    counts: list[int] = []
    p = 0
    while p < len(text):
        x, k, more = 0, 0, True
        while more:
            if p >= len(text):
                return None
            c = ord(text[p]) - 48
            if not 0 <= c < 64:
                return None
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p, k = p + 1, k + 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def _rle_problem(seg: dict) -> str | None:
    """An RLE whose run lengths are negative or do not cover h x w would make pycocotools write past its mask."""
    size, counts = seg.get("size"), seg.get("counts")
    if not (_number_list(size, 2) and all(isinstance(v, int) and v > 0 for v in size)):
        return "segmentation RLE without a size [h, w] of positive integers"
    runs = rle_counts(counts) if isinstance(counts, str) else counts if isinstance(counts, list) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in counts) else None
    if runs is None or any(v < 0 for v in runs) or sum(runs) != size[0] * size[1]:
        return f"segmentation RLE whose counts do not cover its {size[1]}x{size[0]} size"
    return None


def segmentation_problem(seg: Any) -> str | None:
    """Why a COCO ``segmentation`` cannot be decoded (None: polygons with >= 3 finite points, or an RLE dict whose
    runs cover its size)."""
    if seg is None:
        return "no segmentation (masks are needed)"
    if isinstance(seg, dict):
        return _rle_problem(seg)
    if isinstance(seg, list) and seg and all(_number_list(p) and len(p) >= 6 and len(p) % 2 == 0 and
                                             all(math.isfinite(v) and abs(v) < 1e7 for v in p) for p in seg):
        return None
    return "segmentation is neither polygons (lists of >= 3 finite x, y pairs) nor an RLE dict"


def read_json(path: str | os.PathLike, what: str) -> Any:
    """The parsed JSON of ``path``; DataError in one line when it is missing, unreadable or not JSON."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such {what}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: unreadable {what} ({exc.__class__.__name__})") from None
    except ValueError as exc:
        raise DataError(f"{path}: not JSON ({exc}); expected a {what}") from None


def coco_document(path: str | os.PathLike, *, segments: bool = False,
                  skips: SkipCounter | None = None) -> tuple[dict[str, Any], BoxDrops]:
    """A COCO instances file with its annotations checked: (the cleaned dict for pycocotools, what was dropped).

    Refused in one line (DataError) when it is not a dict with ``images``, ``annotations`` and ``categories``
    lists, or an image / category lacks its id. Each annotation that names no known image, no known category,
    has a malformed or unusable ``bbox`` (xywh, clipped to the image's width x height) or, with ``segments``, an
    undecodable segmentation is dropped and named in ``skips``. Boxes stay xywh, clipped.
    """
    path = Path(path)
    doc = read_json(path, "COCO annotation file")
    expected = "expected a COCO dict with 'images', 'annotations' and 'categories' lists"
    if not isinstance(doc, dict):
        raise DataError(f"{path}: a JSON {type(doc).__name__}, {expected}")
    missing = [k for k in ("images", "annotations", "categories") if not isinstance(doc.get(k), list)]
    if missing:
        raise DataError(f"{path}: no {' / '.join(repr(k) for k in missing)} list; {expected}")
    images = _by_id(doc["images"], path, "image", ("file_name",))
    categories = _by_id(doc["categories"], path, "category", ("name",))
    kept, drops = [], BoxDrops()
    for n, ann in enumerate(doc["annotations"]):
        drops.total += 1
        problem, ann = _annotation_problem(ann, images, categories, segments)
        if problem is None:
            kept.append(ann)
            continue
        ident = ann.get("id", n) if isinstance(ann, dict) else n
        drops.drop(problem[0], f"annotation {ident}: {problem[1]}")
        _note(skips, f"{path} (annotation {ident})", f"{problem[1]}; dropped")
    return {**doc, "images": list(images.values()), "categories": list(categories.values()),
            "annotations": kept}, drops


def _by_id(items: list, path: Path, what: str, keys: tuple[str, ...]) -> dict[Any, dict]:
    """``items`` by their integer id; DataError when one is not a dict with an id and ``keys``."""
    found: dict[Any, dict] = {}
    for n, item in enumerate(items):
        if not isinstance(item, dict) or isinstance(item.get("id"), bool) or not isinstance(item.get("id"), int) \
                or any(k not in item for k in keys):
            raise DataError(f"{path}: {what} {n} is not a dict with an integer 'id' and "
                            f"{', '.join(repr(k) for k in keys)}")
        found.setdefault(item["id"], item)
    return found


def _annotation_problem(ann: Any, images: dict, categories: dict,
                        segments: bool) -> tuple[tuple[str, str] | None, Any]:
    """((reason key, message) or None, the annotation with its bbox clipped)."""
    if not isinstance(ann, dict) or not _number_list(ann.get("bbox"), 4):
        return (MALFORMED, "annotation without a bbox of 4 numbers [x, y, w, h]"), ann
    image = images.get(ann.get("image_id"))
    if image is None:
        return (MALFORMED, f"annotation of image_id {ann.get('image_id')!r}, not in 'images'"), ann
    if ann.get("category_id") not in categories or isinstance(ann.get("category_id"), bool):
        return (UNKNOWN_CLASS, f"category_id {ann.get('category_id')!r} is not in 'categories'"), ann
    width, height = _image_size(image)
    if segments and (why := _mask_problem(ann.get("segmentation"), width, height)):
        return (MALFORMED, why), ann
    x, y, w, h = (float(v) for v in ann["bbox"])
    problem = box_problem([x, y, x + w, y + h], width, height)
    if problem is not None:
        size = f" in a {width:g}x{height:g} image" if width is not None else ""
        return (problem, f"box {problem} (xywh [{x:g}, {y:g}, {w:g}, {h:g}]{size})"), ann
    if width is not None:
        x0, y0 = max(x, 0.0), max(y, 0.0)
        x1, y1 = min(x + w, width), min(y + h, height)
        ann = {**ann, "bbox": [x0, y0, x1 - x0, y1 - y0]}
    return None, ann


def _mask_problem(seg: Any, width: float | None, height: float | None) -> str | None:
    """Why pycocotools cannot decode ``seg`` into a mask of the image (which must declare its integer size)."""
    if width is None or not float(width).is_integer() or not float(height).is_integer():
        return "its image declares no integer width and height (needed to decode masks)"
    why = segmentation_problem(seg)
    if why is None and isinstance(seg, dict) and list(seg["size"]) != [int(height), int(width)]:
        why = f"segmentation RLE of size {seg['size']}, its image is {int(height)}x{int(width)} (h x w)"
    return why


def _image_size(image: dict) -> tuple[float | None, float | None]:
    width, height = image.get("width"), image.get("height")
    if _number_list([width, height], 2) and width > 0 and height > 0:
        return float(width), float(height)
    return None, None
