"""Panoptic quality (Kirillov et al., CVPR 2019): PQ = SQ x RQ per class, averaged over the classes that occur.

A predicted and a ground-truth segment of the same class match when their IoU exceeds 0.5 (so matches are unique);
SQ is the mean IoU of the matches, RQ = TP / (TP + FP / 2 + FN / 2). Stuff segments of one class in one image are
one segment. Void (pixels without a segment, or of a class outside the vocabulary) follows one of two protocols:

- ``panopticapi`` (the default; COCO's panopticapi, which detectron2, Mask2Former and ODISE report): a prediction's
  pixels over ground-truth void leave its area in the union and an unmatched prediction that is mostly (> 0.5)
  ground-truth void is no false positive; every unmatched ground-truth segment is a false negative, and the pixels
  of a ground-truth segment that were left unpredicted stay in the union.
- ``torchmetrics`` (``PanopticQuality`` of torchmetrics, equal on random maps in the tests): the same, except that
  unpredicted pixels also leave the union and an unmatched ground-truth segment that is mostly unpredicted is no
  false negative - so a model that leaves an object void is not charged for missing it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import torch

VOID = -1


@dataclass(frozen=True)
class VoidRule:
    """How unpredicted (void) pixels count; see the module's docstring."""

    unpredicted_leave_union: bool
    unpredicted_excuse_fn: bool


#: PQ's void protocols by name
PROTOCOLS: dict[str, VoidRule] = {"panopticapi": VoidRule(False, False), "torchmetrics": VoidRule(True, True)}


def _colours(ids: np.ndarray, labels: Mapping[int, int], isthing: Sequence[bool]) -> np.ndarray:
    """(N,) colour per pixel: category x 2^32 + instance (0 for stuff), ``VOID`` where no known segment."""
    out = np.full(ids.shape, VOID, dtype=np.int64)
    for segment, label in labels.items():
        if 0 <= label < len(isthing):
            out[ids == segment] = int(label) * (1 << 32) + (int(segment) if isthing[label] else 0)
    return out


def _areas(values: np.ndarray) -> dict[int, int]:
    keys, counts = np.unique(values, return_counts=True)
    return dict(zip(keys.tolist(), counts.tolist()))


@dataclass
class PanopticQuality:
    """Accumulates per-class IoU sums, TP, FP and FN over images; ``compute`` gives PQ / SQ / RQ for all classes,
    things and stuff (x 100), and per class.

    Args:
        isthing: thing (True) or stuff (False) per class index.
        protocol: a name in ``PROTOCOLS``: how void pixels count.
    """

    isthing: Sequence[bool]
    protocol: str = "panopticapi"
    rule: VoidRule = field(init=False)
    iou: np.ndarray = field(init=False)
    tp: np.ndarray = field(init=False)
    fp: np.ndarray = field(init=False)
    fn: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"PQ protocol {self.protocol!r}: expected one of {', '.join(PROTOCOLS)}")
        self.rule = PROTOCOLS[self.protocol]
        self.isthing = [bool(t) for t in self.isthing]
        count = len(self.isthing)
        self.iou = np.zeros(count)
        self.tp, self.fp, self.fn = (np.zeros(count, dtype=np.int64) for _ in range(3))

    def update(self, pred_ids: torch.Tensor | np.ndarray, pred_labels: Mapping[int, int],
               gt_ids: torch.Tensor | np.ndarray, gt_labels: Mapping[int, int]) -> None:
        """One image: segment-id maps (H, W) and each map's segment id -> class index (ids not listed: void)."""
        pred = _colours(np.asarray(pred_ids).reshape(-1), pred_labels, self.isthing)
        gt = _colours(np.asarray(gt_ids).reshape(-1), gt_labels, self.isthing)
        if pred.shape != gt.shape:
            raise ValueError(f"panoptic maps differ in size: {pred.shape} vs {gt.shape}")
        pred_area, gt_area = _areas(pred), _areas(gt)
        keys, counts = np.unique(np.stack([pred, gt], 1), axis=0, return_counts=True)
        inter = {(int(p), int(g)): int(c) for (p, g), c in zip(keys, counts)}
        matched_pred, matched_gt = set(), set()
        for (p, g), area in inter.items():
            if p == VOID or g == VOID or p >> 32 != g >> 32:
                continue
            unpredicted = inter.get((VOID, g), 0) if self.rule.unpredicted_leave_union else 0
            union = pred_area[p] - inter.get((p, VOID), 0) + gt_area[g] - unpredicted - area
            iou = area / union
            if iou > 0.5:
                matched_pred.add(p)
                matched_gt.add(g)
                self.iou[g >> 32] += iou
                self.tp[g >> 32] += 1
        for g in set(gt_area) - matched_gt - {VOID}:
            if not self.rule.unpredicted_excuse_fn or inter.get((VOID, g), 0) / gt_area[g] <= 0.5:
                self.fn[g >> 32] += 1
        for p in set(pred_area) - matched_pred - {VOID}:
            if inter.get((p, VOID), 0) / pred_area[p] <= 0.5:
                self.fp[p >> 32] += 1

    def per_class(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(PQ, SQ, RQ, occurs) per class, in [0, 1]; ``occurs``: TP + FP + FN > 0."""
        sq = np.where(self.tp > 0, self.iou / np.maximum(self.tp, 1), 0.0)
        denominator = self.tp + 0.5 * self.fp + 0.5 * self.fn
        rq = np.where(denominator > 0, self.tp / np.maximum(denominator, 1e-12), 0.0)
        return sq * rq, sq, rq, denominator > 0

    def compute(self) -> dict[str, float]:
        """PQ / SQ / RQ (x 100) averaged over the classes that occur: all, things (``_th``), stuff (``_st``)."""
        pq, sq, rq, occurs = self.per_class()
        things = np.asarray(self.isthing, dtype=bool)
        out: dict[str, float] = {}
        for suffix, chosen in (("", occurs), ("_th", occurs & things), ("_st", occurs & ~things)):
            for name, values in (("pq", pq), ("sq", sq), ("rq", rq)):
                out[name + suffix] = float(100 * values[chosen].mean()) if chosen.any() else float("nan")
        return out
