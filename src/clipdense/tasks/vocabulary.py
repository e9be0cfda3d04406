"""Zero-shot labels for long vocabularies in memory-bounded class blocks.

Why: the full-resolution score tensor of zero-shot segmentation is C x H x W floats per image; with 2 000 classes
on a 512 x 512 picture that is 2 GB before the softmax doubles it. The dense maps themselves are small (D x h x w
per window), so they are computed once and the classes are scored ``block`` at a time: each block's cosines are
assembled from the windows, upsampled to the picture, and folded into a running best score, its class and the
log-sum-exp that gives the top class's probability (softmax of ``SEG_LOGIT_SCALE`` x cosine, as
``class_probabilities``). Peak memory is then ``block`` x H x W floats, whatever C is. With C <= ``block`` the
labels are ``labels_from_probabilities`` of ``class_probabilities`` of the same cosines as ``segment_logits``.

The windows of every image in a batch go through the image tower together (``dense_windows``), which is where the
speed over mmseg-style slide inference (one forward per window) comes from.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from ..models.dense import encode_dense
from .segment import BACKGROUND, SEG_LOGIT_SCALE, _window_starts, class_probabilities, labels_from_probabilities

#: classes scored at once; C x H x W floats of one block bound the memory of a long vocabulary
CLASS_BLOCK = 256
#: sliding-window crops per forward of the image tower (of all images of a batch together)
WINDOW_BATCH = 8

Window = tuple[int, int, torch.Tensor]   # top, left, (B, D, h, w) unit-norm dense map of that crop


def dense_windows(model: torch.nn.Module, images: torch.Tensor, mode: str, window: int | None = None,
                  stride: int | None = None, window_batch: int = WINDOW_BATCH) -> list[Window]:
    """The dense map of each sliding window (one window = the whole image when ``window`` is None), in the order
    ``sliding_window`` visits them. Crops of one size go through the tower ``window_batch`` at a time (the images'
    crops stacked on the batch axis): mmseg's slide inference runs one forward per window."""
    if window is None:
        return [(0, 0, encode_dense(model, images, mode).float())]
    stride = stride or max(window // 2, 1)
    height, width = images.shape[-2:]
    boxes = [(top, left) for top in _window_starts(height, window, stride) for left in _window_starts(width, window,
                                                                                                      stride)]
    crops = [images[:, :, top:top + window, left:left + window] for top, left in boxes]
    maps: list[torch.Tensor] = []
    per_forward = max(1, window_batch // images.shape[0])
    for start in range(0, len(crops), per_forward):
        chunk = crops[start:start + per_forward]
        if any(crop.shape != chunk[0].shape for crop in chunk):   # an image smaller than the window: one by one
            maps += [encode_dense(model, crop, mode).float() for crop in chunk]
            continue
        dense = encode_dense(model, torch.cat(chunk), mode).float()
        maps += list(dense.split(images.shape[0]))
    return [(top, left, dense) for (top, left), dense in zip(boxes, maps)]


def _block_cosines(windows: Sequence[Window], index: int, classifier: torch.Tensor, window: int | None,
                   size: tuple[int, int]) -> torch.Tensor:
    """(1, c, H, W) cosines of image ``index`` at input size ``size`` for the classes of ``classifier``: each
    window's map scored and upsampled to its crop, overlaps averaged (as ``sliding_window``)."""
    total = classifier.new_zeros((1, classifier.shape[0], *size), dtype=torch.float32)
    count = classifier.new_zeros((1, 1, *size), dtype=torch.float32)
    for top, left, dense in windows:
        crop = (min(window, size[0] - top), min(window, size[1] - left)) if window is not None else size
        logits = torch.einsum("bdhw,cd->bchw", dense[index:index + 1], classifier.to(dense.device, dense.dtype))
        total[:, :, top:top + crop[0], left:left + crop[1]] += F.interpolate(logits, size=crop, mode="bilinear",
                                                                             align_corners=False)
        count[:, :, top:top + crop[0], left:left + crop[1]] += 1
    return total / count


def zero_shot_labels(model: torch.nn.Module, images: torch.Tensor, classifier: torch.Tensor,
                     originals: Sequence[tuple[int, int]], mode: str = "maskclip", window: int | None = None,
                     background_threshold: float | None = None, block: int = CLASS_BLOCK) -> list[torch.Tensor]:
    """One (H, W) int64 label map per image of ``images`` (B, 3, h, w), at its size in ``originals``: argmax of the
    cosines with ``classifier`` (C, D), BACKGROUND where the top class's probability is below the threshold."""
    windows = dense_windows(model, images, mode, window)
    if classifier.shape[0] <= block:   # one block: the background rule of ``class_probabilities`` as it is
        return [labels_from_probabilities(class_probabilities(F.interpolate(
            _block_cosines(windows, i, classifier, window, images.shape[-2:]), size=size, mode="bilinear",
            align_corners=False)), background_threshold)[0] for i, size in enumerate(originals)]
    out = []
    for index, size in enumerate(originals):
        best = torch.full(size, -torch.inf, device=images.device)
        labels = torch.zeros(size, dtype=torch.int64, device=images.device)
        log_total = torch.full(size, -torch.inf, device=images.device)
        for start in range(0, classifier.shape[0], block):
            cosines = _block_cosines(windows, index, classifier[start:start + block], window, images.shape[-2:])
            scaled = F.interpolate(cosines, size=size, mode="bilinear", align_corners=False)[0].mul_(SEG_LOGIT_SCALE)
            value, found = scaled.max(dim=0)
            better = value > best
            labels = torch.where(better, found + start, labels)
            best = torch.where(better, value, best)
            log_total = torch.logaddexp(log_total, scaled.logsumexp(dim=0))
            del cosines, scaled
        if background_threshold is not None:
            labels = torch.where((best - log_total).exp() < background_threshold,
                                 torch.full_like(labels, BACKGROUND), labels)
        out.append(labels)
    return out
