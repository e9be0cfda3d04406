"""Semantic segmentation of user images: zero-shot (dense features against a text classifier) or with a
trained head (Cat-Seg, LSeg: ``head=``), whole-image or sliding-window, at any size."""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..models.dense import encode_dense
from ..models.segmenters import segmenter_of
from ..models.text import Template, text_classifier
from .images import ImageLike, as_pil, check_dense_settings, dense_input, one_image

BACKGROUND = -1  # label of pixels under the background threshold
#: temperature of zero-shot segmentation's softmax, fixed so thresholds mean the same for every model
SEG_LOGIT_SCALE = 50.0


def _window_starts(length: int, window: int, stride: int) -> list[int]:
    if length <= window:
        return [0]
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] != length - window:
        starts.append(length - window)
    return starts


def segment_logits(model: torch.nn.Module, images: torch.Tensor, classifier: torch.Tensor,
                   mode: str = "maskclip", window: int | None = None, stride: int | None = None) -> torch.Tensor:
    """(B, C, H, W) cosine similarities at input resolution, whole-image or sliding-window.

    Sliding windows (as mmseg's slide inference used by MaskCLIP/SCLIP) average overlapping logits. A model with a
    registered segmenter (``models.segmenters``: GroupViT's grouping) is scored by it, with class probabilities in
    place of cosines; ``mode`` does not apply to it.
    """
    own = segmenter_of(model)
    if own is not None:
        return sliding_window(lambda crop: own.class_scores(crop, classifier), images, classifier.shape[0],
                              window, stride)
    return sliding_window(lambda crop: _whole_logits(model, crop, classifier, mode), images, classifier.shape[0],
                          window, stride)


def sliding_window(scores: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, num_classes: int,
                   window: int | None = None, stride: int | None = None) -> torch.Tensor:
    """(B, C, H, W): ``scores`` of the whole image (``window`` None), or of overlapping ``window``-sized crops
    averaged where they overlap; ``scores(crop)`` returns (B, C, h, w) at the crop's size."""
    if window is None:
        return scores(images)
    stride = stride or max(window // 2, 1)
    batch, _, height, width = images.shape
    total = images.new_zeros((batch, num_classes, height, width), dtype=torch.float32)
    count = images.new_zeros((1, 1, height, width), dtype=torch.float32)
    for top in _window_starts(height, window, stride):
        for left in _window_starts(width, window, stride):
            crop = images[:, :, top:top + window, left:left + window]
            total[:, :, top:top + crop.shape[-2], left:left + crop.shape[-1]] += scores(crop).float()
            count[:, :, top:top + crop.shape[-2], left:left + crop.shape[-1]] += 1
    return total / count


def _whole_logits(model: torch.nn.Module, images: torch.Tensor, classifier: torch.Tensor,
                  mode: str) -> torch.Tensor:
    dense = encode_dense(model, images, mode).float()
    logits = torch.einsum("bdhw,cd->bchw", dense, classifier.to(dense.device, dense.dtype))
    return F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)


def class_probabilities(cosines: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Per-pixel class probabilities of zero-shot cosine scores: softmax of ``SEG_LOGIT_SCALE`` x cosine.

    Why a fixed scale and not the model's own ``logit_scale``: a background threshold then means the same for
    every model (as in ClearCLIP / NACLIP's protocol), in ``segment``, the page and ``clipdense eval`` alike."""
    return (cosines.float() * SEG_LOGIT_SCALE).softmax(dim=dim)


def labels_from_probabilities(probs: torch.Tensor, background_threshold: float | None = None) -> torch.Tensor:
    """The background rule: argmax labels of (B, C, H, W) class probabilities, and BACKGROUND where the top
    probability is strictly below ``background_threshold`` (None: no background).

    The one rule ``segment``, ``clipdense serve`` and the evaluation's things-only setting apply; the probabilities
    are ``class_probabilities`` of zero-shot cosines, a trained head's ``probabilities``, or a segmenter's scores."""
    best, labels = probs.max(dim=1)
    if background_threshold is not None:
        labels = torch.where(best < background_threshold, torch.full_like(labels, BACKGROUND), labels)
    return labels


def labels_from_logits(logits: torch.Tensor, logit_scale: float = SEG_LOGIT_SCALE,
                       background_threshold: float | None = None) -> torch.Tensor:
    """Argmax labels of zero-shot cosine scores with the background rule (``labels_from_probabilities``)."""
    return labels_from_probabilities((logits.float() * logit_scale).softmax(dim=1), background_threshold)


def resolve_head(bundle, head: object) -> torch.nn.Module:
    """A trained segmentation head: a loaded one, or a head file / run dir loaded onto ``bundle``."""
    from ..heads.expect import load_expected

    return load_expected(head, bundle, "segmenter")   # a panoptic head segments by its semantic inference


@torch.no_grad()
def segment(bundle, image: ImageLike, classes: Sequence[str], mode: str = "maskclip",
            templates: str | Sequence[Template] = "imagenet", short_side: int | None = None,
            window: int | None = None, background_threshold: float | None = None,
            head: object = None) -> torch.Tensor:
    """(H, W) int64 label map at the image's original size; values index ``classes`` (or BACKGROUND).

    Args:
        short_side: resize the image's short side to this before inference (default: the model's input size,
            or the size a head was trained at).
        window: sliding-window size in pixels after resizing (default: whole image at once).
        background_threshold: minimum top-class probability; below it a pixel is BACKGROUND (the rule of
            ``labels_from_probabilities``; zero-shot probabilities are ``class_probabilities``).
        head: a trained segmentation head (``load_head``), or its file / run dir; ``mode`` and ``templates``
            are then the head's own. Any class names work, not only those it was trained on.

    A model with its own segmenter (GroupViT) segments by it: each pixel takes its group, the group its class
    among the image's top-k, and ``background_threshold`` applies to that class's score; ``mode`` is not used.
    """
    if not classes:
        raise ConfigError("classes: empty list")
    check_dense_settings(short_side, window, background_threshold)
    image = one_image(image, "segment")
    trained = resolve_head(bundle, head) if head is not None else None
    inputs, original = segment_input(bundle, image, short_side, trained)
    return segment_inputs(bundle, inputs, [original], list(classes), mode, templates, window,
                          background_threshold, trained)[0]


def segment_input(bundle, image: ImageLike, short_side: int | None = None,
                  trained: torch.nn.Module | None = None) -> tuple[torch.Tensor, tuple[int, int]]:
    """(1, 3, h, w) model input of one image (short side at ``short_side``, default the model's or the head's
    input size) on the bundle's device, and the image's original (H, W)."""
    pil = as_pil(image) if not isinstance(image, torch.Tensor) else None
    original = (pil.height, pil.width) if pil is not None else tuple(image.shape[-2:])
    side = short_side or (trained.config.image_size if trained is not None else min(bundle.image_size))
    return dense_input(bundle.model, pil if pil is not None else image, side).to(bundle.device), original


def segment_inputs(bundle, inputs: torch.Tensor, originals: Sequence[tuple[int, int]], classes: Sequence[str],
                   mode: str = "maskclip", templates: str | Sequence[Template] = "imagenet",
                   window: int | None = None, background_threshold: float | None = None,
                   trained: torch.nn.Module | None = None) -> list[torch.Tensor]:
    """One (H, W) label map per image of ``inputs`` (B, 3, h, w: images of one input size), each at its size in
    ``originals``: the one path of ``segment`` and ``segment_batch``. Zero-shot scores of long vocabularies go in
    class blocks (``vocabulary.zero_shot_labels``)."""
    from .vocabulary import zero_shot_labels

    model = bundle.model
    if trained is not None:
        logits = sliding_window(lambda crop: trained.segment_logits(crop, list(classes)), inputs, len(classes), window)
        return [labels_from_probabilities(trained.probabilities(F.interpolate(
            logits[i:i + 1], size=size, mode="bilinear", align_corners=False)), background_threshold)[0].cpu()
            for i, size in enumerate(originals)]
    classifier = text_classifier(bundle, classes, templates)
    if segmenter_of(model) is not None:   # its own segmenter's scores are class probabilities already
        logits = segment_logits(model, inputs, classifier, mode, window)
        return [labels_from_probabilities(F.interpolate(logits[i:i + 1], size=size, mode="bilinear",
                                                        align_corners=False), background_threshold)[0].cpu()
                for i, size in enumerate(originals)]
    return [labels.cpu() for labels in zero_shot_labels(model, inputs, classifier, originals, mode, window,
                                                        background_threshold)]
