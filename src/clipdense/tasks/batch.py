"""Batch entry points: many images in, a list with one result per image out, each equal to the single-image call.

    labels = cd.segment_batch(bundle, ["a.png", "b.png"], ["cat", "dog"])          # [(H, W), (H, W)]
    probs = cd.classify_batch(bundle, images, [["cat", "dog"], ["car", "bus"]])    # one class list per image
    found = cd.detect_batch(bundle, folder, ["red circle"], head=head)             # a folder of images

The single-image functions keep their return types (``segment`` one label map, ``classify`` one vector); these
always return a list. Images that reach the model at one size and share a class list run as one forward
(``batching.size_groups``): nothing is padded, so a batch never changes a result.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Sequence

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..models.text import Template, text_classifier
from .batching import DEFAULT_BATCH, ClassesLike, ImagesLike, class_lists, image_list, size_groups
from .detect import Detections, as_detector, pixels
from .images import as_pil, check_dense_settings
from .segment import resolve_head, segment_input, segment_inputs

if TYPE_CHECKING:
    from ..heads.adapters import Adapter
    from ..heads.detection import Detector


@torch.no_grad()
def segment_batch(bundle: Any, images: ImagesLike, classes: ClassesLike, mode: str = "maskclip",
                  templates: str | Sequence[Template] = "imagenet", short_side: int | None = None,
                  window: int | None = None, background_threshold: float | None = None, head: object = None,
                  batch_size: int = DEFAULT_BATCH) -> list[torch.Tensor]:
    """One (H, W) int64 label map per image, each equal to ``segment`` of that image with the same arguments.

    Args:
        images: a list of paths / PIL images / (3, H, W) tensors, a (B, 3, H, W) tensor, or a folder.
        classes: one list of names for all images, or one list per image.
        batch_size: at most this many images of one input size per forward.
    """
    items = image_list(images, "segment_batch")
    names = class_lists(classes, len(items), "segment_batch")
    check_dense_settings(short_side, window, background_threshold)
    trained = resolve_head(bundle, head) if head is not None else None
    prepared = [segment_input(bundle, item, short_side, trained) for item in items]
    out: list[torch.Tensor | None] = [None] * len(items)
    for group in size_groups([(tuple(prepared[i][0].shape), names[i]) for i in range(len(items))], batch_size):
        inputs = torch.cat([prepared[i][0] for i in group])
        labels = segment_inputs(bundle, inputs, [prepared[i][1] for i in group], list(names[group[0]]), mode,
                                templates, window, background_threshold, trained)
        for index, result in zip(group, labels):
            out[index] = result
    return out   # type: ignore[return-value]


def classify_input(bundle: Any, image: Any) -> torch.Tensor:
    """(3, h, w) model input of one image: a tensor is taken as already preprocessed (as ``classify`` does)."""
    if isinstance(image, torch.Tensor):
        tensor = image[0] if image.ndim == 4 and image.shape[0] == 1 else image
        if tensor.ndim != 3:
            raise ConfigError(f"classify_batch: expected (3, H, W) image tensors, got shape {tuple(image.shape)}")
        return tensor
    return bundle.preprocess(as_pil(image))


@torch.no_grad()
def classify_batch(bundle: Any, images: ImagesLike, classes: ClassesLike,
                   templates: str | Sequence[Template] = "imagenet", adapter: Adapter | None = None,
                   batch_size: int = DEFAULT_BATCH) -> list[torch.Tensor]:
    """One (C_i,) probability vector per image, each equal to ``classify`` of that image (images and classes as
    ``segment_batch``; with ``adapter`` the adapter scores them)."""
    items = image_list(images, "classify_batch")
    names = class_lists(classes, len(items), "classify_batch")
    inputs = [classify_input(bundle, item) for item in items]
    out: list[torch.Tensor | None] = [None] * len(items)
    scale = bundle.model.logit_scale.exp().float()
    for group in size_groups([(tuple(inputs[i].shape), names[i]) for i in range(len(items))], batch_size):
        tensor = torch.stack([inputs[i] for i in group]).to(bundle.device)
        vocabulary = list(names[group[0]])
        if adapter is not None:
            probs = adapter.predict(tensor, vocabulary).cpu()
        else:
            features = F.normalize(bundle.model.encode_image(tensor).float(), dim=-1)
            classifier = text_classifier(bundle, vocabulary, templates)
            # one row at a time: a (1, D) product is what ``classify`` computes (a (B, D) GEMM rounds otherwise)
            probs = torch.cat([(scale * row[None] @ classifier.T).float().softmax(dim=-1) for row in features]).cpu()
        for index, row in zip(group, probs):
            out[index] = row
    return out   # type: ignore[return-value]


@torch.no_grad()
def detect_batch(bundle: Any, images: ImagesLike, classes: ClassesLike | None = None,
                 head: Detector | str | os.PathLike | None = None, min_score: float = 0.0,
                 batch_size: int = DEFAULT_BATCH) -> list[Detections]:
    """One ``Detections`` per image, each equal to ``detect`` of that image (classes default to the head's; the
    detector's transform pads a batch to its largest image, so only images of one size share a forward)."""
    if head is None:
        raise ConfigError("detect_batch needs a detector head (head=...): train one with "
                          "`clipdense train --objective fvit`")
    detector = as_detector(head, bundle)
    items = image_list(images, "detect_batch")
    names = class_lists(list(detector.classes) if classes is None else classes, len(items), "detect_batch")
    tensors = [pixels(item) for item in items]
    out: list[Detections | None] = [None] * len(items)
    for group in size_groups([(tuple(tensors[i].shape), names[i]) for i in range(len(items))], batch_size):
        vocabulary = list(names[group[0]])
        found = detector.detect([tensors[i].to(bundle.device) for i in group], vocabulary)
        for index, result in zip(group, found):
            out[index] = Detections.of(result, vocabulary).above(min_score)
    return out   # type: ignore[return-value]
