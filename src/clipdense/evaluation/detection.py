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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import torch
import torchvision.transforms.functional as TF

from ..data.skips import SkipCounter
from ..errors import ConfigError
from ..tasks.detect import mask_rle
from .common import chunks, progress
from .context import EvalContext
from .inputs import load_or_skip
from .options import option
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


def box_ap(gt: Any, results: list[dict[str, Any]], groups: Mapping[str, Sequence[int]], iou_type: str = "bbox",
           agnostic: bool = False) -> dict[str, Any]:
    """COCOeval on ``results`` -> {"AP50": {group: %}, "AP": {group: %}, "AR100": %} (percent; NaN for a group
    without ground truth). ``groups``: name -> category ids; ``iou_type``: bbox, or segm (results and ground truth
    carry ``segmentation`` RLEs); ``agnostic``: COCOeval's ``useCats=0`` (any detection may match any object:
    localisation alone, reported as the one group ``all``)."""
    from pycocotools.cocoeval import COCOeval
    empty = {"AP50": {g: 0.0 for g in groups}, "AP": {g: 0.0 for g in groups}, "AR100": 0.0}
    if not results:
        return empty
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(results)
        evaluator = COCOeval(gt, dt, iou_type)
        evaluator.params.useCats = int(not agnostic)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    precision = evaluator.eval["precision"]             # (iou, recall, category, area, max dets)
    index = {cid: k for k, cid in enumerate(evaluator.params.catIds)}
    if agnostic:   # one category column: every object of every class
        groups, index = {"all": [0]}, {0: 0}
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
                      show_progress: bool = False, masks: bool = False, agnostic: bool = False
                      ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """AP50 novel / base / all (+ AP, AR@100) of ``detector`` on a reader of boxes + labels; with ``masks`` (a
    reader with instance masks, a head with a mask branch) the same for masks under ``result["mask"]``; with
    ``agnostic`` also class-agnostic AP (``box_ap``'s) under ``result["agnostic"]`` (and its ``mask``).

    Returns the result and the detections as COCO results entries (category id = 1 + index into
    ``result["classes"]``, image id = 1 + position in the reader's order of readable images)."""
    skips = skips if skips is not None else SkipCounter()
    isthing = getattr(reader, "isthing", None)
    flags = [bool(t) for t in isthing] if isthing is not None else [True] * len(reader.classes)
    names, base, novel = evaluation_classes(detector, reader.classes, flags)
    category = {reader.classes.index(n): i + 1 for i, n in enumerate(names)}   # reader label -> category id
    images, annotations, results, mask_results = [], [], [], []
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
            annotations += _truth(sample, category, image_id, len(annotations), masks)
            found_boxes, found_masks = detection_results(det, image_id)
            results += found_boxes
            mask_results += found_masks
    categories = [{"id": i + 1, "name": n} for i, n in enumerate(names)]
    groups = {"novel": [names.index(n) + 1 for n in novel], "base": [names.index(n) + 1 for n in base],
              "all": list(range(1, len(names) + 1))}
    truth = coco_ground_truth(images, annotations, categories)
    scores = box_ap(truth, results, groups)
    if masks:
        scores["mask"] = box_ap(truth, mask_results, groups, "segm")
    if agnostic:
        scores["agnostic"] = box_ap(truth, results, groups, agnostic=True)
        if masks:
            scores["agnostic"]["mask"] = box_ap(truth, mask_results, groups, "segm", agnostic=True)
    return {**scores, "num_images": len(images), "num_boxes": len(annotations), "classes": names, "base": base,
            "novel": novel, "head": detector.kind}, results


def _truth(sample: Any, category: Mapping[int, int], image_id: int, first: int, masks: bool) -> list[dict[str, Any]]:
    """The sample's boxes of evaluated classes as COCO annotations (ids from ``first`` + 1); with ``masks`` each
    carries its instance mask as an RLE and the mask's area."""
    out = []
    rows = zip(sample.boxes.tolist(), sample.labels.tolist(), sample.masks if masks else [None] * len(sample.labels))
    for box, label, mask in rows:
        if label in category:
            w, h = box[2] - box[0], box[3] - box[1]
            ann = {"id": first + len(out) + 1, "image_id": image_id, "iscrowd": 0, "category_id": category[label],
                   "bbox": [box[0], box[1], w, h], "area": w * h}
            if mask is not None:
                ann["segmentation"], ann["area"] = mask_rle(mask), float(mask.sum())
            out.append(ann)
    return out


def detection_results(det: Mapping[str, torch.Tensor], image_id: int) -> tuple[list[dict], list[dict]]:
    """(box results, mask results) of one image's detections (labels index the evaluated names; masks, when the
    head gives them, (K, H, W) or (K, 1, H, W) probabilities or bools, binarised at 0.5)."""
    boxes, masks = [], []
    for k, (box, score, label) in enumerate(zip(det["boxes"].tolist(), det["scores"].tolist(),
                                                det["labels"].tolist())):
        entry = {"image_id": image_id, "category_id": int(label) + 1, "score": float(score),
                 "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]]}
        boxes.append(entry)
        if "masks" in det:
            mask = det["masks"][k]
            masks.append({**entry, "segmentation": mask_rle((mask.float() >= 0.5).reshape(mask.shape[-2:]))})
    return boxes, masks


def detection_report(result: dict[str, Any]) -> list[str]:
    """The Markdown section of ``clipdense eval --tasks detection`` (and ``instances``: a row for masks)."""
    rows = []
    parts = [("boxes", result)] + ([("masks", result["mask"])] if "mask" in result else [])
    if "agnostic" in result:
        found = result["agnostic"]
        parts += [("boxes, class-agnostic", found)] + ([("masks, class-agnostic", found["mask"])] if "mask" in found
                                                       else [])
    for what, part in parts:
        ap50, ap = part["AP50"], part["AP"]
        cells = [ap50.get("novel", float("nan")), ap50.get("base", float("nan")), ap50["all"], ap["all"],
                 part["AR100"]]
        rows.append(f"| {result['head']} | {what} | " + " | ".join("–" if v != v else f"{v:.1f}" for v in cells)
                    + " |")
    return ["| head | of | AP50 novel | AP50 base | AP50 all | AP all | AR@100 |", "|---|---|---|---|---|---|---|",
            *rows, "", f"{result['num_images']} images, {result['num_boxes']} boxes; {len(result['base'])} base "
            f"and {len(result['novel'])} novel classes (COCOeval)."]


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


@dataclass
class InstancesOptions:
    """Options of the ``instances`` task (``--task-arg instances.KEY=VALUE``)."""

    agnostic: bool = option(False, "also class-agnostic box and mask AP (COCOeval useCats=0): how well the head "
                                   "finds and outlines objects, whatever it names them")


@register_task("instances", needs={"boxes", "labels", "masks"}, summary="box and mask AP50 novel / base / all of a "
               "detector head with a mask branch (F-ViT or GLIP with mask_head=true; COCOeval segm)",
               report=detection_report, needs_head=True, head_role="detector", options=InstancesOptions)
def instances_task(ctx: EvalContext, reader: Any, options: InstancesOptions) -> tuple[dict, int]:
    """Instance segmentation: the detection task's protocol, scored on masks as well as boxes."""
    from ..tasks.detect import as_detector
    if ctx.head is None:
        raise ConfigError("--tasks instances needs --head HEAD (a detector or GLIP head trained with mask_head=true)")
    detector = as_detector(ctx.head, ctx.bundle).to(ctx.device)
    if not getattr(detector, "has_masks", False):
        raise ConfigError(f"--tasks instances: the {detector.kind} head has no mask branch (train it with "
                          "--objective-arg mask_head=true)")
    result, _ = evaluate_detector(detector, reader, ctx.settings.batch_size, ctx.data.skips,
                                  ctx.settings.show_progress, masks=True, agnostic=options.agnostic)
    return result, result["num_images"]
