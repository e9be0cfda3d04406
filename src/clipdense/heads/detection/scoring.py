"""Open-vocabulary scores and the detections kept from them.

The score ensemble is the papers' own formula (F-ViT / CLIPSelf: base ``s^(1-a) v^a``, novel ``s^(1-b) v^b``;
ViLD's geometric mean is the same with a = 1/3, b = 2/3), where ``s`` is the detector's class probability and
``v`` the second opinion (the frozen CLIP's RoI score, or ViLD's image-embedding branch). The background column
(column 0 of the detector's softmax) never becomes a detection.
"""
from __future__ import annotations

import torch
from torchvision.ops import batched_nms, clip_boxes_to_image, remove_small_boxes


def ensemble_scores(detector: torch.Tensor, second: torch.Tensor, novel: torch.Tensor, alpha: float,
                    beta: float) -> torch.Tensor:
    """(N, C) class scores ``detector^(1-e) * second^e`` with e = ``alpha`` for base and ``beta`` for novel
    columns (``novel``: (C,) bool)."""
    exponent = torch.where(novel.to(detector.device), torch.tensor(float(beta), device=detector.device),
                           torch.tensor(float(alpha), device=detector.device))
    return detector.clamp_min(0) ** (1 - exponent) * second.clamp_min(0) ** exponent


def select_detections(boxes: torch.Tensor, scores: torch.Tensor, image_size: tuple[int, int],
                      score_threshold: float, nms: float, limit: int) -> dict[str, torch.Tensor]:
    """One image's detections from class-agnostic boxes (N, 4) and class scores (N, C), background excluded.

    Every (box, class) pair above ``score_threshold`` is a candidate; per-class NMS at IoU ``nms``; the best
    ``limit`` are kept. Returns boxes (K, 4) xyxy, scores (K,), labels (K,) indices into the C classes.
    """
    count, classes = scores.shape
    boxes = clip_boxes_to_image(boxes, image_size)
    labels = torch.arange(classes, device=scores.device).expand(count, classes).reshape(-1)
    flat_boxes = boxes[:, None].expand(count, classes, 4).reshape(-1, 4)
    flat_scores = scores.reshape(-1)
    keep = torch.where(flat_scores > score_threshold)[0]
    keep = keep[remove_small_boxes(flat_boxes[keep], 1e-2)]
    keep = keep[batched_nms(flat_boxes[keep], flat_scores[keep], labels[keep], nms)[:limit]]
    return {"boxes": flat_boxes[keep], "scores": flat_scores[keep], "labels": labels[keep]}

