"""Box AP of an open-vocabulary detector head, the OV-COCO protocol: AP50 on novel, base and all classes with
pycocotools' COCOeval, plus AP (IoU .50:.95) and AR@100 over all classes.

The classes evaluated are the head's trained (base) classes and the novel classes its training split named
(a world's novel things, OV-COCO's 17), among the data's thing categories; other categories (OV-COCO's unused 15,
stuff) take no part. Base / novel numbers are COCOeval's per-category precision averaged over each group, exactly
what a COCOeval restricted to that group's categories reports. Detections are COCO results entries.
"""
from __future__ import annotations

import contextlib
import io
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import torch
import torchvision.transforms.functional as TF

from ..errors import ConfigError
from ..data.skips import SkipCounter
from .common import chunks, progress
from .inputs import load_or_skip
from .context import EvalContext
from .registry import NoOptions, register_task

if TYPE_CHECKING:
    from ..heads.detection import Detector


def coco_ground_truth(images: list[dict[str, Any]], annotations: list[dict[str, Any]],
                      categories: list[dict[str, Any]]) -> Any:
    """An in-memory pycocotools ``COCO`` from instances-style lists (bbox as x, y, w, h)."""
    from pycocotools.coco import COCO
    gt = COCO()
    gt.dataset = {"images": images, "annotations": annotations, "categories": categories}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


def box_ap(gt: Any, results: list[dict[str, Any]], groups: Mapping[str, Sequence[int]]) -> dict[str, Any]:
    """COCOeval bbox on ``results`` -> {"AP50": {group: %}, "AP": {group: %}, "AR100": %} (percent; NaN for a
    group without ground truth). ``groups``: name -> category ids."""
    from pycocotools.cocoeval import COCOeval
    empty = {"AP50": {g: 0.0 for g in groups}, "AP": {g: 0.0 for g in groups}, "AR100": 0.0}
    if not results:
        return empty
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(results)
        evaluator = COCOeval(gt, dt, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    precision = evaluator.eval["precision"]             # (iou, recall, category, area, max dets)
    index = {cid: k for k, cid in enumerate(evaluator.params.catIds)}
    out: dict[str, Any] = {"AP50": {}, "AP": {}, "AR100": round(100 * float(evaluator.stats[8]), 2)}
    for name, ids in groups.items():
        columns = [index[c] for c in ids if c in index]
        for key, values in (("AP50", precision[0, :, columns, 0, -1]), ("AP", precision[:, :, columns, 0, -1])):
            valid = values[values > -1]
            out[key][name] = round(100 * float(np.mean(valid)), 2) if valid.size else float("nan")
    return out


def evaluation_classes(detector: "Detector", classes: Sequence[str], isthing: Sequence[bool]
                       ) -> tuple[list[str], list[str], list[str]]:
    """(evaluated names, base, novel) among the data's thing classes: the head's trained classes and the novel
    ones its split named (every other thing class when it named none)."""
    things = [c for c, t in zip(classes, isthing) if t]
    base = [c for c in things if c in detector.classes]
    named = set(detector.config.novel)
    novel = [c for c in things if c not in detector.classes and (not named or c in named)]
    if not base and not novel:
        raise ConfigError(f"detection: none of the head's classes {detector.classes[:4]}... are categories of the data")
    return base + novel, base, novel


def evaluate_detector(detector: "Detector", reader: Any, batch_size: int = 8, skips: SkipCounter | None = None,
                      show_progress: bool = False) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """AP50 novel / base / all (+ AP, AR@100) of ``detector`` on a reader of boxes + labels.

    Returns the result and the detections as COCO results entries (category id = 1 + index into
    ``result["classes"]``, image id = 1 + position in the reader's order of readable images)."""
    skips = skips if skips is not None else SkipCounter()
    isthing = getattr(reader, "isthing", None)
    flags = [bool(t) for t in isthing] if isthing is not None else [True] * len(reader.classes)
    names, base, novel = evaluation_classes(detector, reader.classes, flags)
    category = {reader.classes.index(n): i + 1 for i, n in enumerate(names)}   # reader label -> category id
    images, annotations, results = [], [], []
    device = detector.logit_scale.device
    indices = list(range(len(reader)))
    for chunk in progress(list(chunks(indices, batch_size)), "detection", enabled=show_progress):
        samples = [s for s in (load_or_skip(skips, lambda i=i: reader[i]) for i in chunk) if s is not None]
        if not samples:
            continue
        found = detector.detect([TF.to_tensor(s.image).to(device) for s in samples], names)
        for sample, det in zip(samples, found):
            image_id = len(images) + 1
            images.append({"id": image_id, "file_name": sample.key, "width": sample.image.width,
                           "height": sample.image.height})
            for box, label in zip(sample.boxes.tolist(), sample.labels.tolist()):
                if label in category:
                    w, h = box[2] - box[0], box[3] - box[1]
                    annotations.append({"id": len(annotations) + 1, "image_id": image_id, "iscrowd": 0,
                                        "category_id": category[label], "bbox": [box[0], box[1], w, h],
                                        "area": w * h})
            results += _results(det, image_id)
    categories = [{"id": i + 1, "name": n} for i, n in enumerate(names)]
    groups = {"novel": [names.index(n) + 1 for n in novel], "base": [names.index(n) + 1 for n in base],
              "all": list(range(1, len(names) + 1))}
    scores = box_ap(coco_ground_truth(images, annotations, categories), results, groups)
    return {**scores, "num_images": len(images), "num_boxes": len(annotations), "classes": names, "base": base,
            "novel": novel, "head": detector.kind}, results


def _results(det: Mapping[str, torch.Tensor], image_id: int) -> list[dict[str, Any]]:
    out = []
    for box, score, label in zip(det["boxes"].tolist(), det["scores"].tolist(), det["labels"].tolist()):
        out.append({"image_id": image_id, "category_id": int(label) + 1, "score": float(score),
                    "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]]})
    return out


def detection_report(result: dict[str, Any]) -> list[str]:
    """The Markdown section of ``clipdense eval --tasks detection``."""
    ap50, ap = result["AP50"], result["AP"]
    cells = [ap50["novel"], ap50["base"], ap50["all"], ap["all"], result["AR100"]]
    rows = [f"| {result['head']} | " + " | ".join("–" if v != v else f"{v:.1f}" for v in cells) + " |"]
    return ["| head | AP50 novel | AP50 base | AP50 all | AP all | AR@100 |", "|---|---|---|---|---|---|", *rows, "",
            f"{result['num_images']} images, {result['num_boxes']} boxes; {len(result['base'])} base and "
            f"{len(result['novel'])} novel classes (COCOeval, boxes)."]


@register_task("detection", needs={"boxes", "labels"}, summary="box AP50 novel / base / all of a detector head "
               "(--head, from `clipdense train --objective fvit|vild`)", report=detection_report,
               needs_head=True, head_role="detector")
def detection_task(ctx: EvalContext, reader: Any, options: NoOptions) -> tuple[dict, int]:
    """The registered task: the context's detector head on the reader's images."""
    from ..tasks.detect import as_detector
    if ctx.head is None:
        raise ConfigError("--tasks detection needs --head HEAD (a detector from `clipdense train --objective "
                          "fvit|vild`)")
    detector = as_detector(ctx.head, ctx.bundle).to(ctx.device)
    result, _ = evaluate_detector(detector, reader, ctx.settings.batch_size, ctx.data.skips,
                                  ctx.settings.show_progress)
    return result, result["num_images"]
