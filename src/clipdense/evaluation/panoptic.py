"""Open-vocabulary panoptic segmentation of a ``segmenter/panoptic`` head (ODISE's protocol): PQ / SQ / RQ over all
classes, things and stuff, and over the classes the head saw and did not see in training; semantic mIoU (the same
queries' semantic inference) and mask AP of the thing classes (the same queries' instance inference, pycocotools
``segm``) on the same images.

The ground truth is the data's segments (a world's COCO instances + COCO-Stuff, COCO panoptic): things one segment
each, stuff of one class one segment, later segments drawn over earlier ones, unannotated pixels void. The classes
are the data's, with its own thing / stuff flags; a second world with another vocabulary is ODISE's cross-dataset
transfer (COCO -> ADE20K).
"""
from __future__ import annotations

import contextlib
import io
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torchvision.transforms.functional as TF

from ..data.sample import Sample
from ..data.skips import SkipCounter
from ..errors import ConfigError, ModelLoadError
from .common import progress
from .context import EvalContext
from .inputs import load_or_skip
from .metrics import confusion_matrix, mean_iou
from .options import option
from .panoptic_quality import PROTOCOLS, PanopticQuality
from .registry import register_task


@dataclass(frozen=True)
class PanopticOptions:
    """Options of the ``panoptic`` task (``--task-arg panoptic.KEY=VALUE``)."""

    alpha: float | None = option(None, "ensemble exponent of the CLIP's mask-pooled score for seen classes "
                                 "(default: the head's, 0.4; 0 = the head's score alone)", low=0.0, high=1.0,
                                 what="an exponent in [0, 1]")
    beta: float | None = option(None, "the same for unseen classes (default: the head's, 0.8; 1 = the CLIP's "
                                "score alone)", low=0.0, high=1.0, what="an exponent in [0, 1]")
    clip: str | None = option(None, "the CLIP whose mask-pooled score enters the ensemble: a model spec or run "
                              "folder load_model reads (e.g. a CLIPSelf run); default: the head's frozen backbone",
                              what="a model spec")
    protocol: str = option("panopticapi", "how PQ counts unpredicted pixels: panopticapi (COCO's, as detectron2 / "
                           "ODISE report: a missed segment is a false negative) or torchmetrics (a segment left "
                           "mostly unpredicted is not)", choices=tuple(PROTOCOLS))


def ground_truth(sample: Sample, shape: tuple[int, int]) -> tuple[torch.Tensor, dict[int, int]]:
    """(H, W) segment ids (0 = void) and id -> class of a sample's masks, in annotation order."""
    ids = torch.zeros(shape, dtype=torch.long)
    labels: dict[int, int] = {}
    if sample.masks is None or sample.labels is None:
        return ids, labels
    for index, (mask, label) in enumerate(zip(sample.masks.bool(), sample.labels.tolist()), start=1):
        ids[mask] = index
        labels[index] = int(label)
    return ids, labels


def _semantic_truth(ids: torch.Tensor, labels: dict[int, int], ignore: int) -> torch.Tensor:
    lookup = torch.full((max(labels, default=0) + 1,), ignore, dtype=torch.long)
    for segment, label in labels.items():
        lookup[segment] = label
    return lookup[ids]


def _mask_results(masks: torch.Tensor, labels: torch.Tensor, scores: torch.Tensor, image_id: int) -> list[dict]:
    from pycocotools import mask as mask_utils
    out = []
    for mask, label, score in zip(masks.numpy(), labels.tolist(), scores.tolist()):
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        out.append({"image_id": image_id, "category_id": int(label) + 1, "segmentation": rle, "score": float(score)})
    return out


def _mask_truth(ids: torch.Tensor, labels: dict[int, int], isthing: Sequence[bool], image_id: int,
                start: int) -> list[dict]:
    from pycocotools import mask as mask_utils
    out = []
    for segment, label in labels.items():
        mask = (ids == segment).numpy()
        if not isthing[label] or not mask.any():
            continue
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        out.append({"id": start + len(out), "image_id": image_id, "category_id": int(label) + 1, "iscrowd": 0,
                    "segmentation": rle, "area": float(mask.sum()), "bbox": list(mask_utils.toBbox(rle))})
    return out


def mask_ap(images: list[dict], truth: list[dict], results: list[dict], classes: Sequence[str]) -> float:
    """COCOeval ``segm`` AP (IoU .50:.95, x 100) of ``results`` against ``truth`` (NaN without thing segments)."""
    from pycocotools.cocoeval import COCOeval
    from .detection import coco_ground_truth
    if not truth:
        return float("nan")
    if not results:
        return 0.0
    gt = coco_ground_truth(images, truth, [{"id": i + 1, "name": n} for i, n in enumerate(classes)])
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = COCOeval(gt, gt.loadRes(results), "segm")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return round(100 * float(evaluator.stats[0]), 2)


def _mean(values: np.ndarray, chosen: np.ndarray) -> float:
    return round(float(100 * values[chosen].mean()), 2) if chosen.any() else float("nan")


def evaluate_panoptic(head: Any, reader: Any, options: PanopticOptions | None = None, clip: Any = None,
                      skips: SkipCounter | None = None, show_progress: bool = False) -> dict[str, Any]:
    """PQ (all / things / stuff / seen / unseen), semantic mIoU and thing mask AP of ``head`` on ``reader``."""
    from ..heads.segmentation.panoptic_merge import instance_predictions, merge_panoptic, semantic_scores
    options = options or PanopticOptions()
    skips = skips if skips is not None else SkipCounter()
    classes = list(reader.classes)
    isthing = [bool(t) for t in reader.isthing] if getattr(reader, "isthing", None) is not None else \
        [True] * len(classes)
    config = head.config
    saved = (config.alpha, config.beta)
    config.alpha = saved[0] if options.alpha is None else float(options.alpha)
    config.beta = saved[1] if options.beta is None else float(options.beta)
    flags = torch.tensor(isthing)
    quality = PanopticQuality(isthing, options.protocol)
    confmat = torch.zeros(len(classes), len(classes), dtype=torch.long)
    images, truth, results = [], [], []
    try:
        for index in progress(range(len(reader)), "panoptic", enabled=show_progress):
            sample = load_or_skip(skips, lambda i=index: reader[i])
            if sample is None:
                continue
            image = TF.to_tensor(sample.image)
            probs, masks = head.query_probabilities(image, classes, clip)
            probs, masks = probs.cpu(), masks.cpu()
            found = merge_panoptic(probs, masks, flags, config.object_threshold, config.overlap_threshold)
            ids, labels = ground_truth(sample, tuple(image.shape[-2:]))
            quality.update(found.ids, {s.id: s.label for s in found.segments}, ids, labels)
            confmat += confusion_matrix(semantic_scores(probs, masks).argmax(0), _semantic_truth(ids, labels, -1),
                                        len(classes), ignore_index=None)
            image_id = len(images) + 1
            images.append({"id": image_id, "file_name": sample.key, "height": image.shape[1], "width": image.shape[2]})
            truth += _mask_truth(ids, labels, isthing, image_id, len(truth) + 1)
            results += _mask_results(*instance_predictions(probs, masks, flags), image_id)
    finally:
        config.alpha, config.beta = saved
    pq, sq, rq, occurs = quality.per_class()
    seen = np.array([c in set(head.classes) for c in classes])
    scores = {k: (round(v, 2) if not math.isnan(v) else v) for k, v in quality.compute().items()}
    return {**scores, "pq_seen": _mean(pq, occurs & seen), "pq_unseen": _mean(pq, occurs & ~seen),
            "miou": round(100 * mean_iou(confmat), 2), "mask_ap": mask_ap(images, truth, results, classes),
            "per_class_pq": {c: round(float(100 * v), 2) for c, v, o in zip(classes, pq, occurs) if o},
            "num_images": len(images), "classes": classes, "unseen": [c for c, s in zip(classes, seen) if not s],
            "protocol": options.protocol, "alpha": options.alpha if options.alpha is not None else saved[0],
            "beta": options.beta if options.beta is not None else saved[1]}


def panoptic_report(result: dict[str, Any]) -> list[str]:
    """The Markdown section of ``clipdense eval --tasks panoptic``."""
    keys = ["pq", "sq", "rq", "pq_th", "pq_st", "pq_seen", "pq_unseen", "miou", "mask_ap"]
    cells = " | ".join("–" if result[k] != result[k] else f"{result[k]:.1f}" for k in keys)
    return ["| PQ | SQ | RQ | PQ things | PQ stuff | PQ seen | PQ unseen | mIoU | mask AP |",
            "|---|---|---|---|---|---|---|---|---|", f"| {cells} |", "",
            f"{result['num_images']} images; unseen classes: {', '.join(result['unseen']) or 'none'}; "
            f"ensemble alpha {result['alpha']}, beta {result['beta']}; PQ counted as {result['protocol']}."]


@register_task("panoptic", needs={"boxes", "labels", "masks"}, summary="PQ / SQ / RQ (things, stuff, seen, unseen), "
               "mIoU and mask AP of a panoptic head (--head, from `clipdense train --objective mask2former`)",
               report=panoptic_report, needs_head=True, options=PanopticOptions, head_role="panoptic")
def panoptic_task(ctx: EvalContext, reader: Any, options: PanopticOptions) -> tuple[dict, int]:
    """The registered task: the context's panoptic head on the reader's images."""
    from ..heads import load_head
    from ..heads.segmentation import PanopticHead
    from ..models import load_model
    if ctx.head is None:
        raise ConfigError("--tasks panoptic needs --head HEAD (a panoptic head from `clipdense train --objective "
                          "mask2former`)")
    head = ctx.head if isinstance(ctx.head, torch.nn.Module) else load_head(ctx.head, ctx.bundle)
    if not isinstance(head, PanopticHead):
        raise ModelLoadError(f"{ctx.head}: not a panoptic head (train one with `clipdense train --objective "
                             "mask2former`)")
    clip = load_model(options.clip, device=ctx.device) if options.clip else None
    result = evaluate_panoptic(head.to(ctx.device), reader, options, clip, ctx.data.skips,
                               ctx.settings.show_progress)
    return result, result["num_images"]
