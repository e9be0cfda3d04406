"""Region classification, the CLIPSelf protocol: classify ground-truth regions from each registered region
method's embeddings (``region_methods``: rois / crops / maskpool).

Scores are per-class mean top-1 / top-5 against *all* classes, reported over thing and stuff classes apart,
and for things by box size counted in patches of the dense map (a 1-patch object is one token).
"""
from __future__ import annotations

from collections.abc import Sized
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable, Iterable, Mapping, Sequence

import torch
from torch import Tensor

from ..data.sample import Sample
from ..errors import ConfigError
from . import metrics
from .common import normalize, progress
from .context import EvalContext
from .inputs import Batches, resize_short_side, sample_batches
from .options import option
from .region_methods import RegionBatch, RegionEncoders, region_method_names, resolve_region_methods
from .registry import NO_HEAD, register_task

if TYPE_CHECKING:
    from ..data import CocoRegions
    from ..data.skips import SkipCounter

#: thing boxes by side (square root of the area) in patches of the dense map: [low, high)
SIZE_BUCKETS: dict[str, tuple[float, float]] = {"small": (0.0, 2.0), "medium": (2.0, 4.0),
                                                "large": (4.0, float("inf"))}
CROP_VIEWS = ("letterbox", "stretch")


@dataclass(frozen=True)
class RegionOptions:
    """Options of the ``regions`` task (``--task-arg regions.KEY=VALUE``)."""

    methods: tuple[str, ...] = option(region_method_names(), "region methods to run (comma list)",
                                      flag="--region-methods", choices=region_method_names)
    crops: str = option("letterbox", "how the crops baseline fits a region to the model's input: letterbox "
                        "(CLIPSelf's published teacher view) or stretch (a CLIPSelf run with --no-keep-aspect)",
                        flag="--crops", choices=CROP_VIEWS)
    thing_expand: float = option(1.5, "thing boxes are expanded by this factor about their centre before "
                                 "cropping", low=1.0, what="a factor")


def region_classification(classifier: Tensor, batches: Iterable[RegionBatch], things: Sequence[int],
                          stuff: Sequence[int], encoders: RegionEncoders,
                          methods: str | Sequence[str] | None = None,
                          groups: Mapping[str, Sequence[int]] | None = None, show_progress: bool = False) -> dict:
    """Per-class mean top-1/top-5 of each method, over thing classes and over stuff classes.

    Args:
        classifier: (C, D) class embeddings; every region is classified among all C classes.
        batches: images with ground-truth boxes, masks and labels (sized: the progress bar shows a total).
        encoders: what the methods read the model through (each method's ``needs`` must be given).
        methods: registered region method names (``region_methods.REGION_METHODS``); None: all of them.
        groups: named class subsets (base / novel) reported as per-class means over their classes.
    """
    chosen = resolve_region_methods(region_method_names() if methods is None else methods)
    for method in chosen:
        method.check(encoders)
    num_classes = classifier.shape[0]
    weights = normalize(classifier).cpu()
    thing_mask = torch.zeros(num_classes, dtype=torch.bool)
    thing_mask[torch.as_tensor(list(things), dtype=torch.long)] = True
    correct: dict[str, dict[int, list[Tensor]]] = {m.name: {1: [], 5: []} for m in chosen}
    labels_all: list[Tensor] = []
    sides: list[Tensor] = []
    total = len(batches) if isinstance(batches, Sized) else None
    with torch.no_grad():
        for batch in progress(batches, "regions", total, show_progress):
            labels = torch.cat(batch.labels).long().cpu() if batch.labels else torch.zeros(0, dtype=torch.long)
            if labels.numel() == 0:
                continue
            labels_all.append(labels)
            sides.append(torch.cat([box_sides(b) for b in batch.boxes]).cpu())
            dense = encoders.encode_dense(batch.images) if any(m.dense for m in chosen) else None
            for method in chosen:
                logits = normalize(method.embed(batch, dense, encoders, thing_mask)).cpu() @ weights.t()
                for k in (1, 5):
                    correct[method.name][k].append(metrics.topk_correct(logits, labels, k))
    if not labels_all:
        raise ConfigError("region classification: no annotated regions found (expected boxes with labels)")
    targets = torch.cat(labels_all)
    subsets = {"things": list(things), "stuff": list(stuff), **{k: list(v) for k, v in (groups or {}).items()}}
    result: dict = {}
    for name, per_k in correct.items():
        hits = {k: torch.cat(v) for k, v in per_k.items()}
        result[name] = {subset: {f"top{k}": metrics.per_class_mean_accuracy(hits[k], targets, members)
                                 for k in (1, 5)} for subset, members in subsets.items()}
    if encoders.patch_size:
        _add_size_buckets(result, correct, targets, torch.cat(sides) / encoders.patch_size, thing_mask)
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


@register_task("regions", head_role=NO_HEAD, needs={"boxes", "labels", "masks"}, options=RegionOptions,
               summary="CLIPSelf's region classification (rois / crops / maskpool, things / stuff)")
def run_regions(ctx: EvalContext, reader: CocoRegions, options: RegionOptions) -> tuple[dict, int]:
    """Methods that do not read the dense map (crops) run once; the others once per dense mode.
    Classes and thing/stuff come from the reader (COCO categories and their ``isthing``)."""
    settings, classes = ctx.settings, list(reader.classes)
    weights = ctx.classifier(classes)
    isthing = reader.isthing.tolist()
    things, stuff = [i for i, t in enumerate(isthing) if t], [i for i, t in enumerate(isthing) if not t]
    groups = ctx.data.group_indices(classes)
    keep_aspect = options.crops == "letterbox"
    base = RegionEncoders(encode_image=ctx.encode_image, input_size=ctx.input_size,
                          crop=lambda images, boxes: ctx.crop(images, boxes, keep_aspect),
                          pool_boxes=ctx.pool_boxes, pool_masks=ctx.pool_masks, thing_expand=options.thing_expand,
                          batch_size=settings.batch_size, patch_size=ctx.patch_size)
    batches = region_batches(reader, ctx.to_tensor, ctx.short_side, settings.batch_size, ctx.data.skips)
    chosen = resolve_region_methods(options.methods)
    once = tuple(m.name for m in chosen if not m.dense)
    per_mode = tuple(m.name for m in chosen if m.dense)
    out: dict = {"dense": {}}
    images = 0
    if once:
        res = region_classification(weights, batches, things, stuff, base, once, groups, settings.show_progress)
        out.update(res)
        images += len(batches.items)
    for mode in ctx.modes if per_mode else ():
        res = region_classification(weights, batches, things, stuff, replace(base, encode_dense=ctx.dense(mode)),
                                    per_mode, groups, settings.show_progress)
        out["dense"][mode] = {m: res[m] for m in per_mode}
        out.update({k: v for k, v in res.items() if k not in per_mode})
        images += len(batches.items)
    return out, images
