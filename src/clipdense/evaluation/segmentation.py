"""Zero-shot semantic segmentation (MaskCLIP / SCLIP protocol): argmax of per-pixel class scores -> mIoU.

Two settings, both reported because they answer different questions:
- ``semantic_segmentation``: every class (things and stuff) is named and the argmax decides.
- ``segmentation_with_background``: only thing classes are named; a pixel is background by the one rule of
  ``tasks.segment`` (``labels_from_probabilities``: its top class probability - for zero-shot scores
  ``class_probabilities``, softmax of 50 x cosine - is below ``threshold``), the same labels ``clipdense segment``
  and the page give; stuff pixels count as background in the ground truth (the COCO-Object /
  VOC-with-background protocol of SCLIP, ClearCLIP and NACLIP).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from ..tasks.segment import BACKGROUND, SEG_LOGIT_SCALE, class_probabilities, labels_from_probabilities
from . import metrics
from .common import LogitsFn, progress
from .context import EvalContext
from .inputs import resize_short_side
from .options import option
from .registry import register_task

if TYPE_CHECKING:
    from ..data import SemSegFolder

Predictor = Callable[[Tensor], Tensor]  # (B, C, H, W) scores -> (B, H, W) class indices
ToProbabilities = Callable[[Tensor], Tensor]   # (B, C, H, W) scores -> class probabilities over those C


@dataclass(frozen=True)
class SegmentationOptions:
    """Options of the ``segmentation`` task (``--task-arg segmentation.KEY=VALUE``)."""

    window: int | None = option(None, "sliding-window size (px, after resizing); none: the whole image at once",
                                flag="--window", low=1, what="a size in pixels")
    stride: int | None = option(None, "sliding-window stride (px; default: window / 2)", flag="--stride", low=1,
                                what="a size in pixels", requires="window")
    background_threshold: float = option(0.1, "things-only setting: a pixel whose top class probability is under "
                                         "it is background (tasks.segment's rule, as `clipdense segment`)",
                                         flag="--bg-threshold", low=0.0, high=1.0, what="a probability")


@dataclass(frozen=True)
class Feed:
    """How the (image, label map) pairs are read: the label maps' ignore index, images per forward pass, and
    the progress bar (``total`` images, shown or not)."""

    ignore_index: int = 255
    batch_size: int = 1
    total: int | None = None
    show_progress: bool = False


@dataclass
class _Head:
    """One way of turning the scores into a label map, with its own confusion matrix."""

    num_classes: int
    predict: Predictor
    label_map: Tensor | None = None      # original label -> this head's label
    channels: Tensor | None = None       # which score channels this head reads (None: all)


def _same_size_batches(samples: Iterable[tuple[Tensor, Tensor]], batch_size: int
                       ) -> Iterator[tuple[Tensor, list[Tensor]]]:
    """Stack consecutive images of one size (up to ``batch_size``): one forward pass per batch, not per image."""
    images: list[Tensor] = []
    labels: list[Tensor] = []
    for image, label in samples:
        if images and (len(images) == batch_size or image.shape != images[0].shape):
            yield torch.stack(images), labels
            images, labels = [], []
        images.append(image)
        labels.append(label)
    if images:
        yield torch.stack(images), labels


def _accumulate(logits_fn: LogitsFn, samples: Iterable[tuple[Tensor, Tensor]], heads: Sequence[_Head],
                feed: Feed) -> list[Tensor]:
    """Confusion matrices of every head in one pass; scores are resized to each label's resolution first.

    Why resize scores rather than labels: the protocol scores at the annotation's resolution, whatever
    size the model saw (mmseg's ``resize`` of seg logits before argmax).
    """
    confmats = [torch.zeros(h.num_classes, h.num_classes, dtype=torch.long) for h in heads]
    size = max(1, feed.batch_size)
    with torch.no_grad():
        for images, labels in progress(_same_size_batches(samples, size), "segmentation",
                                       None if feed.total is None else -(-feed.total // size), feed.show_progress):
            batch_logits = logits_fn(images).float().cpu()
            for logits, label in zip(batch_logits, labels):
                _update(confmats, heads, logits[None], label.long().cpu(), feed.ignore_index)
    return confmats


def _update(confmats: list[Tensor], heads: Sequence[_Head], logits: Tensor, label: Tensor,
            ignore_index: int) -> None:
    """Add one image's (1, C, h, w) scores against its (H, W) label to every head's confusion matrix."""
    if logits.shape[-2:] != label.shape[-2:]:
        logits = F.interpolate(logits, size=label.shape[-2:], mode="bilinear", align_corners=False)
    for head, confmat in zip(heads, confmats):
        target = label
        if head.label_map is not None:
            valid = (target >= 0) & (target < len(head.label_map))
            target = torch.where(valid, head.label_map[target.clamp(0, len(head.label_map) - 1)],
                                 torch.full_like(target, ignore_index))
        scores = logits if head.channels is None else logits[:, head.channels]
        confmat += metrics.confusion_matrix(head.predict(scores)[0], target, head.num_classes, ignore_index)


def _argmax(scores: Tensor) -> Tensor:
    return scores.argmax(1)


def semantic_segmentation(logits_fn: LogitsFn, samples: Iterable[tuple[Tensor, Tensor]], num_classes: int,
                          things: Sequence[int], stuff: Sequence[int], feed: Feed = Feed()) -> dict:
    """mIoU, pixel accuracy, things-/stuff-mIoU and object-pixel accuracy with argmax over all classes.

    Args:
        logits_fn: (B, 3, H, W) normalised images -> (B, num_classes, H', W') scores.
        samples: (image (3, H, W), label (H0, W0) int with ``feed.ignore_index``) pairs; consecutive images
            of one size are batched ``feed.batch_size`` at a time.
        things / stuff: class indices of each kind, for the split scores.
    """
    confmat, = _accumulate(logits_fn, samples, [_Head(num_classes, _argmax)], feed)
    return _report(confmat, things, stuff, chance_classes=num_classes)


def segmentation_with_background(logits_fn: LogitsFn, samples: Iterable[tuple[Tensor, Tensor]],
                                 num_classes: int, things: Sequence[int], threshold: float,
                                 probabilities: ToProbabilities = class_probabilities, feed: Feed = Feed()) -> dict:
    """Things plus a thresholded background class (index 0 of the report's classes).

    Args:
        logits_fn: image -> (1, len(things), H', W') scores for the thing classes, in ``things`` order.
        num_classes: classes of the original labels (things and stuff); non-things become background.
        threshold: the background rule's (``tasks.segment.labels_from_probabilities``) threshold.
        probabilities: scores -> class probabilities over the things (default: zero-shot cosines').
    """
    head = _background_head(num_classes, things, threshold, probabilities, channels=None)
    confmat, = _accumulate(logits_fn, samples, [head], feed)
    return _background_report(confmat, len(things), threshold)


def segmentation_both(logits_fn: LogitsFn, samples: Iterable[tuple[Tensor, Tensor]], num_classes: int,
                      things: Sequence[int], stuff: Sequence[int], threshold: float,
                      probabilities: ToProbabilities = class_probabilities, feed: Feed = Feed()) -> dict:
    """Both settings from one forward pass: the thing-only scores are a subset of the all-class scores.

    Returns ``{"argmax": semantic_segmentation's report, "background": segmentation_with_background's}``;
    the background setting is left out (None) when the world has no thing classes.
    """
    heads = [_Head(num_classes, _argmax)]
    if things:
        heads.append(_background_head(num_classes, things, threshold, probabilities,
                                      channels=torch.as_tensor(list(things), dtype=torch.long)))
    confmats = _accumulate(logits_fn, samples, heads, feed)
    return {"argmax": _report(confmats[0], things, stuff, chance_classes=num_classes),
            "background": _background_report(confmats[1], len(things), threshold) if things else None}


def _background_head(num_classes: int, things: Sequence[int], threshold: float, probabilities: ToProbabilities,
                     channels: Tensor | None) -> _Head:
    """Labels: background 0, thing i -> 1 + its rank; prediction: ``tasks.segment``'s background rule on the
    things' probabilities (its BACKGROUND, -1, becomes 0)."""
    if not things:
        raise ConfigError("segmentation with background: the world has no thing classes to name")
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"background threshold: expected a probability in [0, 1], got {threshold}")
    label_map = torch.zeros(num_classes, dtype=torch.long)
    label_map[torch.as_tensor(list(things), dtype=torch.long)] = torch.arange(1, len(things) + 1)

    def predict(scores: Tensor) -> Tensor:
        return labels_from_probabilities(probabilities(scores), threshold) - BACKGROUND
    return _Head(len(things) + 1, predict, label_map, channels)


def _background_report(confmat: Tensor, num_things: int, threshold: float) -> dict:
    report = _report(confmat, range(1, num_things + 1), [0], chance_classes=num_things + 1)
    report.update(threshold=threshold)
    return report


def _report(confmat: Tensor, things: Iterable[int], stuff: Iterable[int], chance_classes: int) -> dict:
    """Scores plus the chance levels of a uniformly random per-pixel guess."""
    things, stuff = list(things), list(stuff)
    report: dict = metrics.segmentation_scores(confmat, things, stuff)
    report["num_pixels"] = int(confmat.sum())
    report["chance"] = {"pixel_acc": 1.0 / chance_classes, "object_pixel_acc": 1.0 / chance_classes,
                        "miou": _chance_miou(confmat, chance_classes)}
    report["iou_per_class"] = metrics.iou_per_class(confmat).tolist()
    return report


def _chance_miou(confmat: Tensor, num_classes: int) -> float:
    """Expected-ish mIoU of uniform random predictions given the ground-truth class frequencies.

    With n_c pixels of class c among N and each pixel guessed uniformly, E[tp] = n_c/C and the predicted
    count is N/C, so IoU_c ~= (n_c/C) / (n_c + N/C - n_c/C). Random guesses name every class, so absent
    classes count with IoU 0 in the mean (the convention of ``metrics.mean_iou``).
    """
    counts = confmat.sum(1).double()
    total = counts.sum()
    if total == 0:
        return float("nan")
    tp = counts / num_classes
    iou = tp / (counts + total / num_classes - tp)
    return iou.mean().item()


def segmentation_head(ctx: EvalContext) -> Any:
    """The ``--head`` when it is a trained segmentation head (Cat-Seg, LSeg), else None (a detector head
    is the detection task's)."""
    if ctx.head is None:
        return None
    from ..heads import load_head
    from ..heads.segmentation import SegmentationHead
    head = load_head(ctx.head, ctx.bundle)
    return head.to(ctx.device).eval() if isinstance(head, SegmentationHead) else None


def add_seen_unseen(report: dict, seen: Sequence[int], unseen: Sequence[int]) -> None:
    """``miou_seen`` / ``miou_unseen``: mean IoU over the classes a head trained on and over the others
    (classes neither present nor predicted left out, as in ``miou``)."""
    iou = torch.tensor(report["iou_per_class"], dtype=torch.float64)
    for key, index in (("miou_seen", seen), ("miou_unseen", unseen)):
        values = iou[torch.as_tensor(list(index), dtype=torch.long)] if index else iou[:0]
        values = values[~values.isnan()]
        report[key] = values.mean().item() if values.numel() else float("nan")


def _feed(ctx: EvalContext, reader: SemSegFolder) -> Feed:
    return Feed(reader.ignore_index, ctx.settings.batch_size, len(reader), ctx.settings.show_progress)


def _with_score(entry: dict, score: str) -> dict:
    """Say what the background threshold was applied to (the things-only report's ``score``)."""
    if entry.get("background") is not None:
        entry["background"]["score"] = score
    return entry


def _head_entry(ctx: EvalContext, reader: SemSegFolder, head: Any, split: tuple[list[int], list[int]],
                options: SegmentationOptions) -> dict:
    """Both settings for a trained head at the size it was trained at; its scores are log-probabilities, so
    the background threshold applies to its own class probabilities (renormalised over the things)."""
    classes = list(reader.classes)
    samples = ((ctx.to_tensor(resize_short_side(s.image, head.config.image_size)), s.semantic) for s in reader)
    entry = segmentation_both(ctx.head_segment_logits(head, classes, options.window, options.stride), samples,
                              len(classes), *split, options.background_threshold, _renormalise, _feed(ctx, reader))
    entry["image_size"] = head.config.image_size
    return _with_score(entry, "the head's class probabilities, renormalised over the things")


def _renormalise(log_probabilities: Tensor) -> Tensor:
    return log_probabilities.softmax(1)


def _identity(probabilities: Tensor) -> Tensor:
    return probabilities


def _segmenter_entry(ctx: EvalContext, reader: SemSegFolder, split: tuple[list[int], list[int]],
                     options: SegmentationOptions) -> dict:
    """Both settings for a model that segments by itself (GroupViT): argmax of its class scores over every class;
    things-only as in the GroupViT paper - only the things are named (each group picks among the image's top-k
    things) and the background rule applies to the class score (a probability) of the pixel's segment."""
    classes, (things, stuff), feed = list(reader.classes), split, _feed(ctx, reader)

    def samples() -> Iterator[tuple[Tensor, Tensor]]:
        return ((ctx.to_tensor(resize_short_side(s.image, ctx.short_side)), s.semantic) for s in reader)

    def scores(names: list[str]) -> LogitsFn:
        return ctx.segment_logits(ctx.segmenter.name, ctx.classifier(names), options.window, options.stride)
    entry = {"argmax": semantic_segmentation(scores(classes), samples(), len(classes), things, stuff, feed),
             "background": None}
    if things:
        entry["background"] = segmentation_with_background(
            scores([classes[i] for i in things]), samples(), len(classes), things, options.background_threshold,
            _identity, feed)
    return _with_score(entry, "class probability of the pixel's segment")


@register_task("segmentation", head_role="semantic", needs={"semantic"}, options=SegmentationOptions,
               summary="zero-shot mIoU over every class, and things-only with a background threshold; with a "
                       "segmentation --head (Cat-Seg, LSeg) also the head, and seen / unseen mIoU")
def run_segmentation(ctx: EvalContext, reader: SemSegFolder, options: SegmentationOptions) -> tuple[dict, int]:
    """Both settings per dense mode; classes from the reader's class-name file, things from a world (else all).

    With a segmentation head (``--head``) the head is one more entry (``head <kind>``), and every entry gains
    mIoU over the classes the head trained on (seen) and the others (unseen)."""
    classes = list(reader.classes)
    thing_names = set(classes if ctx.data.things is None else ctx.data.things)
    split = ([i for i, name in enumerate(classes) if name in thing_names],
             [i for i, name in enumerate(classes) if name not in thing_names])
    weights = ctx.classifier(classes)
    out, images = {}, 0
    for mode in ctx.modes:
        if ctx.segmenter is not None:   # the model segments by itself (GroupViT); ctx.modes names it
            out[mode] = _segmenter_entry(ctx, reader, split, options)
            images += 2 * len(reader)
            continue
        samples = ((ctx.to_tensor(resize_short_side(s.image, ctx.short_side)), s.semantic) for s in reader)
        entry = segmentation_both(ctx.segment_logits(mode, weights, options.window, options.stride), samples,
                                  len(classes), *split, options.background_threshold, class_probabilities,
                                  _feed(ctx, reader))
        out[mode] = _with_score(entry, f"softmax of {SEG_LOGIT_SCALE:g} x cosine over the things")
        images += len(reader)
    head = segmentation_head(ctx)
    if head is not None:
        out[f"head {head.kind}"] = _head_entry(ctx, reader, head, split, options)
        images += len(reader)
        seen = [i for i, name in enumerate(classes) if name in set(head.classes)]
        for entry in out.values():
            add_seen_unseen(entry["argmax"], seen, [i for i in range(len(classes)) if i not in set(seen)])
    return out, images
