"""Region classification, the CLIPSelf protocol: classify ground-truth regions from three embeddings.

- ``rois``: RoIAlign (1x1) of the dense map on each box: what a detector built on the dense map sees.
- ``crops``: the image embedding of the crop (thing boxes expanded 1.5x about their centre, clipped to the
  image), resized to the model's input size: the reference CLIPSelf distils from.
- ``maskpool``: mean of the dense map inside each segment's mask.
Scores are per-class mean top-1 / top-5 against *all* classes, reported over thing and stuff classes apart,
and for things by box size counted in patches of the dense map (a 1-patch object is one token).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Mapping, Sequence

import torch
from torch import Tensor

from ..data.sample import Sample
from ..errors import ConfigError
from ..models.pooling import crop_boxes, expand_boxes
from . import metrics
from .common import DenseEncoder, ImageEncoder, chunks, normalize, progress
from .inputs import Batches, resize_short_side, sample_batches
from .registry import register_task

if TYPE_CHECKING:
    from ..data import CocoRegions
    from ..data.skips import SkipCounter
    from .context import EvalContext

METHODS: tuple[str, ...] = ("rois", "crops", "maskpool")
#: thing boxes by side (square root of the area) in patches of the dense map: [low, high)
SIZE_BUCKETS: dict[str, tuple[float, float]] = {"small": (0.0, 2.0), "medium": (2.0, 4.0),
                                                "large": (4.0, float("inf"))}
CropFn = Callable[[Tensor, list[Tensor]], Tensor]                        # crop(images, boxes) -> crops
BoxPooler = Callable[[Tensor, list[Tensor], tuple[int, int]], Tensor]   # pool_boxes(dense, boxes, image_size)
MaskPooler = Callable[[Tensor, list[Tensor]], Tensor]                    # pool_masks(dense, masks)


@dataclass
class RegionBatch:
    """Images of one size with their ground-truth regions (boxes xyxy in pixels of ``images``)."""

    images: Tensor            # (B, 3, H, W) normalised
    boxes: list[Tensor]       # B x (N_i, 4) float
    masks: list[Tensor]       # B x (N_i, H', W') bool, at any resolution (pooling resizes to the map)
    labels: list[Tensor]      # B x (N_i,) class indices


def embed_regions(method: str, batch: RegionBatch, dense: Tensor | None, *, encode_image: ImageEncoder | None,
                  input_size: tuple[int, int] | None, pool_boxes: BoxPooler | None, pool_masks: MaskPooler | None,
                  thing_mask: Tensor, thing_expand: float, batch_size: int, crop: CropFn | None = None) -> Tensor:
    """(sum N_i, D) embeddings of every region in ``batch`` by ``method``."""
    height, width = batch.images.shape[-2:]
    if method == "rois":
        return pool_boxes(dense, batch.boxes, (height, width))
    if method == "maskpool":
        return pool_masks(dense, batch.masks)
    expanded = []
    for boxes, labels in zip(batch.boxes, batch.labels):
        scale = torch.where(thing_mask[labels], thing_expand, 1.0).to(boxes.dtype)
        expanded.append(expand_boxes(boxes, scale, height, width))
    crops = crop(batch.images, expanded) if crop is not None else crop_boxes(batch.images, expanded, input_size)
    return torch.cat([encode_image(part).float() for part in chunks(crops, batch_size)]) if len(crops) \
        else torch.zeros(0, 0)


def region_classification(classifier: Tensor, batches: Iterable[RegionBatch], things: Sequence[int],
                          stuff: Sequence[int], *, methods: Sequence[str] = METHODS,
                          encode_dense: DenseEncoder | None = None, encode_image: ImageEncoder | None = None,
                          input_size: tuple[int, int] | None = None, pool_boxes: BoxPooler | None = None,
                          pool_masks: MaskPooler | None = None, thing_expand: float = 1.5,
                          groups: Mapping[str, Sequence[int]] | None = None, batch_size: int = 64,
                          total: int | None = None, show_progress: bool = False, crop: CropFn | None = None,
                          patch_size: int | None = None) -> dict:
    """Per-class mean top-1/top-5 of each method, over thing classes and over stuff classes.

    Args:
        classifier: (C, D) class embeddings; every region is classified among all C classes.
        batches: images with ground-truth boxes, masks and labels.
        encode_dense: images -> (B, D, h, w) dense map (``rois``, ``maskpool``).
        encode_image / input_size: image tower and its input size (``crops``).
        crop: ``(images, boxes) -> crops`` at the tower's input size; default: ``crop_boxes`` stretched to
            ``input_size``. The runner passes CLIPSelf's own ``teacher_crops`` (letterboxed), so the ``crops``
            row is the signal CLIPSelf distils.
        pool_boxes / pool_masks: region pooling of the dense map (clipdense.models' in practice).
        groups: named class subsets (base / novel) reported as per-class means over their classes.
        patch_size: the dense map's stride in pixels of the images; with it, thing top-1 is also reported
            per ``SIZE_BUCKETS`` (``things_by_size``) with the regions counted per bucket.
    """
    _check_methods(methods, encode_dense, encode_image, input_size, pool_boxes, pool_masks)
    num_classes = classifier.shape[0]
    weights = normalize(classifier).cpu()
    thing_mask = torch.zeros(num_classes, dtype=torch.bool)
    thing_mask[torch.as_tensor(list(things), dtype=torch.long)] = True
    correct: dict[str, dict[int, list[Tensor]]] = {m: {1: [], 5: []} for m in methods}
    labels_all: list[Tensor] = []
    sides: list[Tensor] = []
    with torch.no_grad():
        for batch in progress(batches, "regions", total, show_progress):
            labels = torch.cat(batch.labels).long().cpu() if batch.labels else torch.zeros(0, dtype=torch.long)
            if labels.numel() == 0:
                continue
            labels_all.append(labels)
            sides.append(torch.cat([box_sides(b) for b in batch.boxes]).cpu())
            dense = encode_dense(batch.images) if any(m != "crops" for m in methods) else None
            for method in methods:
                emb = embed_regions(method, batch, dense, encode_image=encode_image, input_size=input_size,
                                    crop=crop, pool_boxes=pool_boxes, pool_masks=pool_masks, thing_mask=thing_mask,
                                    thing_expand=thing_expand, batch_size=batch_size)
                logits = normalize(emb).cpu() @ weights.t()
                for k in (1, 5):
                    correct[method][k].append(metrics.topk_correct(logits, labels, k))
    if not labels_all:
        raise ConfigError("region classification: no annotated regions found (expected boxes with labels)")
    targets = torch.cat(labels_all)
    subsets = {"things": list(things), "stuff": list(stuff), **{k: list(v) for k, v in (groups or {}).items()}}
    result: dict = {}
    for method in methods:
        hits = {k: torch.cat(v) for k, v in correct[method].items()}
        result[method] = {name: {f"top{k}": metrics.per_class_mean_accuracy(hits[k], targets, members)
                                 for k in (1, 5)} for name, members in subsets.items()}
    if patch_size:
        _add_size_buckets(result, correct, targets, torch.cat(sides) / patch_size, thing_mask)
    result["num_regions"] = {"things": int(thing_mask[targets].sum()), "stuff": int((~thing_mask[targets]).sum())}
    result["chance"] = {"top1": 1.0 / num_classes, "top5": min(5, num_classes) / num_classes}
    return result


def box_sides(boxes: Tensor) -> Tensor:
    """(N,) square root of each xyxy box's area, in the boxes' units."""
    return ((boxes[:, 2] - boxes[:, 0]).clamp_min(0) * (boxes[:, 3] - boxes[:, 1]).clamp_min(0)).sqrt()


def _add_size_buckets(result: dict, correct: dict[str, dict[int, list[Tensor]]], targets: Tensor,
                      sides_in_patches: Tensor, thing_mask: Tensor) -> None:
    """Per-class mean thing top-1 within each size bucket (classes present in the bucket), and the counts."""
    counts = {}
    for name, (low, high) in SIZE_BUCKETS.items():
        inside = thing_mask[targets] & (sides_in_patches >= low) & (sides_in_patches < high)
        counts[name] = int(inside.sum())
        for method, hits in correct.items():
            top1 = torch.cat(hits[1])
            result[method].setdefault("things_by_size", {})[name] = \
                metrics.per_class_mean_accuracy(top1[inside], targets[inside])
    result["num_things_by_size"] = counts


def _check_methods(methods: Sequence[str], encode_dense: DenseEncoder | None, encode_image: ImageEncoder | None,
                   input_size: tuple[int, int] | None, pool_boxes: BoxPooler | None,
                   pool_masks: MaskPooler | None) -> None:
    """Each requested method must have the functions it needs, named in the error."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ConfigError(f"region methods: unknown {unknown}, expected some of {list(METHODS)}")
    needs = {"rois": {"encode_dense": encode_dense, "pool_boxes": pool_boxes},
             "maskpool": {"encode_dense": encode_dense, "pool_masks": pool_masks},
             "crops": {"encode_image": encode_image, "input_size": input_size}}
    for method in methods:
        missing = [name for name, fn in needs[method].items() if fn is None]
        if missing:
            raise ConfigError(f"region method {method!r} needs {missing} (got None)")


def region_batches(reader: CocoRegions, to_tensor: Callable, short_side: int | None, batch_size: int,
                   skips: SkipCounter) -> Batches:
    """Batches of same-size images with their boxes (scaled to the resized image), masks and labels
    (indices into ``reader.classes``); images without regions are left out."""
    def collate(samples: list[Sample]) -> Iterable[RegionBatch]:
        groups: dict[tuple[int, int], RegionBatch] = {}
        for sample in samples:
            if not len(sample.boxes):
                continue
            tensor = to_tensor(resize_short_side(sample.image, short_side))
            batch = groups.setdefault(tuple(tensor.shape[-2:]), RegionBatch([], [], [], []))
            batch.images.append(tensor)
            batch.boxes.append(sample.boxes * (tensor.shape[-1] / sample.image.width))
            batch.masks.append(sample.masks)
            batch.labels.append(sample.labels)
        return [RegionBatch(torch.stack(b.images), b.boxes, b.masks, b.labels) for b in groups.values()]
    return sample_batches(reader, batch_size, skips, collate)


@register_task("regions", needs={"boxes", "labels", "masks"},
               summary="CLIPSelf's region classification (rois / crops / maskpool, things / stuff)")
def run_regions(ctx: EvalContext, reader: CocoRegions) -> tuple[dict, int]:
    """Crops do not depend on the dense mode, so they run once; rois / maskpool run per mode.
    Classes and thing/stuff come from the reader (COCO categories and their ``isthing``)."""
    settings, classes = ctx.settings, list(reader.classes)
    weights = ctx.classifier(classes)
    isthing = reader.isthing.tolist()
    common = dict(things=[i for i, t in enumerate(isthing) if t], stuff=[i for i, t in enumerate(isthing) if not t],
                  groups=ctx.data.group_indices(classes), batch_size=settings.batch_size,
                  show_progress=settings.show_progress, patch_size=ctx.patch_size)
    batches = region_batches(reader, ctx.to_tensor, settings.short_side, settings.batch_size, ctx.data.skips)
    out: dict = {"dense": {}}
    images = 0
    if "crops" in settings.region_methods:
        crops = region_classification(weights, batches, methods=("crops",), encode_image=ctx.encode_image,
                                      input_size=ctx.input_size, crop=ctx.crop, total=len(batches), **common)
        out.update(crops=crops["crops"], **{k: v for k, v in crops.items() if k != "crops"})
        images += len(batches.items)
    dense_methods = tuple(m for m in settings.region_methods if m != "crops")
    for mode in settings.modes if dense_methods else ():
        res = region_classification(weights, batches, methods=dense_methods, encode_dense=ctx.dense(mode),
                                    pool_boxes=ctx.pool_boxes, pool_masks=ctx.pool_masks, total=len(batches),
                                    **common)
        out["dense"][mode] = {m: res[m] for m in dense_methods}
        out.update({k: v for k, v in res.items() if k not in dense_methods})
        images += len(batches.items)
    return out, images
