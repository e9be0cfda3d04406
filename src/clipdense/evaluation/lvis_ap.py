"""LVIS's federated AP with the official ``lvis`` API (LVISEval): box and mask AP, APr / APc / APf.

The task ``lvis`` (``clipdense eval --tasks lvis --head RUN --data lvis:...``) runs a detector head over data
with federated labels (``Sample.federated``: LVIS v1 JSON), rebuilds the ground truth as an LVIS document
(categories with their ``frequency``, each image's ``neg_category_ids`` / ``not_exhaustive_category_ids``) and
scores the detections with ``lvis.LVISEval``: a detection of a class neither boxed nor verified absent on an
image is not counted, an unmatched one of a not-exhaustive class is ignored, at most 300 detections per image.
OV-LVIS (ViLD, F-ViT / CLIPSelf) reports mask APr, the rare classes being the novel ones; a head without a
mask branch gets box AP only.

``lvis`` 0.5.3 (the last release on PyPI) still calls ``np.float``, which numpy 1.24 removed: the evaluation
lends numpy that alias (the builtin ``float``, what it meant) for the duration of the call.
"""
from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

import numpy as np
import torch
import torchvision.transforms.functional as TF

from ..data.sample import Sample
from ..data.skips import SkipCounter
from ..errors import ConfigError
from ..tasks.detect import mask_rle
from .common import chunks, progress
from .context import EvalContext
from .detection import detection_results, evaluation_classes
from .inputs import load_or_skip
from .registry import NoOptions, register_task

if TYPE_CHECKING:
    from ..heads.detection import Detector

#: LVISEval's results, in the order reports list them (APr / APc / APf: rare, common, frequent classes)
KEYS: tuple[str, ...] = ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf")
GROUPS = {"APr": "r", "APc": "c", "APf": "f"}


def _lvis_modules() -> tuple[Any, Any, Any]:
    try:
        with _numpy_aliases():
            from lvis import LVIS, LVISEval, LVISResults
    except ImportError as exc:
        raise ConfigError("the lvis evaluation needs the `lvis` package (LVIS's official API): "
                          "pip install 'clipdense[lvis]'") from exc
    return LVIS, LVISEval, LVISResults


@contextlib.contextmanager
def _numpy_aliases() -> Iterator[None]:
    """``np.float`` = ``float`` while the lvis API runs (it predates numpy 1.24), removed again after."""
    missing = "float" not in np.__dict__
    if missing:
        np.float = float   # type: ignore[attr-defined]
    try:
        yield
    finally:
        if missing:
            del np.float   # type: ignore[attr-defined]


def _empty(gt: Mapping[str, Any]) -> dict[str, float]:
    """Scores of no detections: 0, NaN for a frequency group without ground truth (as LVISEval's -1)."""
    boxed = {a["category_id"] for a in gt["annotations"]}
    present = {c["frequency"] for c in gt["categories"] if c["id"] in boxed}
    return {k: 0.0 if (present if k not in GROUPS else GROUPS[k] in present) else float("nan") for k in KEYS}


def lvis_ap(gt: Mapping[str, Any] | str | Path, results: Sequence[Mapping[str, Any]], iou_type: str = "bbox"
            ) -> dict[str, float]:
    """LVISEval on an LVIS document (dict or JSON path) and COCO-style results -> {AP, AP50, ..., APr, APc, APf}
    in percent (NaN where the API reports -1: a group without ground truth). ``iou_type``: bbox or segm."""
    LVIS, LVISEval, LVISResults = _lvis_modules()
    doc = json.loads(Path(gt).read_text()) if isinstance(gt, (str, Path)) else gt
    if not results:
        return _empty(doc)
    results = [dict(r) for r in copy.deepcopy(list(results))]
    if iou_type == "segm":
        for r in results:
            r.pop("bbox", None)   # the mask's own area decides its size range (as detectron2 does)
    quiet = logging.getLogger("lvis")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with tempfile.TemporaryDirectory() as folder, _numpy_aliases(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)   # its logger.warn calls
            path = Path(folder) / "gt.json"
            path.write_text(json.dumps(doc))
            truth = LVIS(str(path))
            evaluator = LVISEval(truth, LVISResults(truth, results, max_dets=300), iou_type)
            evaluator.run()
            scores = evaluator.get_results()
    finally:
        quiet.setLevel(level)
    return {k: round(100 * float(scores[k]), 2) if float(scores[k]) > -1 else float("nan") for k in KEYS}


class LvisTruth:
    """The LVIS document of the evaluated samples, built as they are read (classes = the evaluated names)."""

    def __init__(self, names: Sequence[str], reader_classes: Sequence[str], frequency: Sequence[str]) -> None:
        self.category = {reader_classes.index(n): i + 1 for i, n in enumerate(names)}   # reader label -> id
        self.doc: dict[str, Any] = {
            "images": [], "annotations": [],
            "categories": [{"id": i + 1, "name": n, "frequency": frequency[reader_classes.index(n)]}
                           for i, n in enumerate(names)]}

    def add(self, sample: Sample) -> int:
        """Add one sample (boxes, labels, masks when present, federated lists); returns its image id."""
        image_id = len(self.doc["images"]) + 1
        federated = sample.federated
        neg = federated.negative.tolist() if federated is not None else []
        partial = federated.not_exhaustive.tolist() if federated is not None else []
        self.doc["images"].append({
            "id": image_id, "width": sample.image.width, "height": sample.image.height, "file_name": sample.key,
            "neg_category_ids": sorted(self.category[c] for c in neg if c in self.category),
            "not_exhaustive_category_ids": sorted(self.category[c] for c in partial if c in self.category)})
        masks = sample.masks if sample.masks is not None else [None] * len(sample.labels)
        for box, label, mask in zip(sample.boxes.tolist(), sample.labels.tolist(), masks):
            if label not in self.category:
                continue
            w, h = box[2] - box[0], box[3] - box[1]
            ann = {"id": len(self.doc["annotations"]) + 1, "image_id": image_id, "category_id": self.category[label],
                   "bbox": [box[0], box[1], w, h], "area": w * h}
            if mask is not None:
                ann["segmentation"] = mask_rle(mask)
                ann["area"] = float(mask.sum())
            self.doc["annotations"].append(ann)
        return image_id


def evaluate_lvis(detector: "Detector", reader: Any, batch_size: int = 8, skips: SkipCounter | None = None,
                  show_progress: bool = False) -> dict[str, Any]:
    """Box (and, for a head with masks, mask) AP of ``detector`` on a reader with federated labels and
    ``frequency`` per class (``data.formats.lvis.LvisRegions``)."""
    skips = skips if skips is not None else SkipCounter()
    frequency = getattr(reader, "frequency", None)
    if frequency is None:
        raise ConfigError("lvis: the data names no class frequencies (expected LVIS v1 JSON: --data lvis:...)")
    names, base, novel = evaluation_classes(detector, reader.classes, [True] * len(reader.classes))
    truth = LvisTruth(names, list(reader.classes), list(frequency))
    box_results, mask_results = [], []
    device = detector.logit_scale.device
    for chunk in progress(list(chunks(list(range(len(reader))), batch_size)), "lvis", enabled=show_progress):
        samples = [s for s in (load_or_skip(skips, lambda i=i: reader[i]) for i in chunk) if s is not None]
        if not samples:
            continue
        found = detector.detect([TF.to_tensor(s.image).to(device) for s in samples], names)
        for sample, det in zip(samples, found):
            boxes, masks = detection_results(det, truth.add(sample))
            box_results += boxes
            mask_results += masks
    with_masks = bool(getattr(detector, "has_masks", False)) and any("segmentation" in a
                                                                     for a in truth.doc["annotations"])
    counts = {f: sum(1 for c in truth.doc["categories"] if c["frequency"] == f) for f in GROUPS.values()}
    return {"box": lvis_ap(truth.doc, box_results, "bbox"),
            "mask": lvis_ap(truth.doc, mask_results, "segm") if with_masks else None,
            "num_images": len(truth.doc["images"]), "num_boxes": len(truth.doc["annotations"]),
            "classes": names, "base": base, "novel": novel, "frequency_classes": counts, "head": detector.kind}


def lvis_report(result: dict[str, Any]) -> list[str]:
    """The Markdown section of ``clipdense eval --tasks lvis``."""
    def cells(scores: Mapping[str, float] | None) -> str:
        keys = ("AP", "APr", "APc", "APf", "AP50")
        return " | ".join("–" if scores is None or math.isnan(scores[k]) else f"{scores[k]:.1f}" for k in keys)
    counts = result["frequency_classes"]
    return ["| iou | AP | APr | APc | APf | AP50 |", "|---|---|---|---|---|---|",
            f"| box | {cells(result['box'])} |", f"| mask | {cells(result['mask'])} |", "",
            f"{result['head']} on {result['num_images']} images, {result['num_boxes']} boxes; {counts['r']} rare, "
            f"{counts['c']} common, {counts['f']} frequent classes ({len(result['novel'])} never trained on); "
            "the lvis API's federated AP" + ("" if result["mask"] is not None else "; the head has no mask branch")
            + "."]


@register_task("lvis", needs={"boxes", "labels", "masks", "federated"},
               summary="LVIS federated box / mask AP, APr / APc / APf of a detector head (the lvis API; --head)",
               report=lvis_report, needs_head=True, head_role="detector")
def lvis_task(ctx: EvalContext, reader: Any, options: NoOptions) -> tuple[dict, int]:
    """The registered task: the context's detector head on an LVIS reader."""
    from ..tasks.detect import as_detector
    if ctx.head is None:
        raise ConfigError("--tasks lvis needs --head HEAD (a detector from `clipdense train --objective fvit|vild`)")
    detector = as_detector(ctx.head, ctx.bundle).to(ctx.device)
    result = evaluate_lvis(detector, reader, ctx.settings.batch_size, ctx.data.skips, ctx.settings.show_progress)
    return result, result["num_images"]
