"""Depth and point-cloud evaluation: the monocular-depth metrics (Eigen et al.'s set, as DepthCLIP reports them)
with DepthCLIP's training-free depth (task ``depth``), and PointCLIP's zero-shot accuracy (task ``points-zeroshot``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..data.formats.modelnet import ModelNetPoints
from ..data.sample import Sample
from ..errors import ConfigError
from ..models.pointviews import PointViewSettings
from ..tasks.depth import DepthClipConfig, depth
from ..tasks.points import combine_views, view_logits
from ..tasks.points_fewshot import point_features
from .context import EvalContext
from .inputs import sample_batches
from .options import option
from .registry import NO_HEAD, register_task


def depth_errors(pred: Tensor, target: Tensor) -> dict[str, float]:
    """Sums over the valid pixels (target > 0) of one map: count, |d-g|/g, (d-g)^2, |log10 d - log10 g| and the
    hits of max(d/g, g/d) < 1.25^k (k = 1, 2, 3); ``depth_metrics`` turns totals into the metrics."""
    valid = target > 0
    d, g = pred[valid].double().clamp_min(1e-3), target[valid].double()
    ratio = torch.maximum(d / g, g / d)
    return {"count": float(valid.sum()), "abs_rel": float(((d - g).abs() / g).sum()),
            "sq": float(((d - g) ** 2).sum()), "log10": float((d.log10() - g.log10()).abs().sum()),
            **{f"d{k}": float((ratio < 1.25 ** k).sum()) for k in (1, 2, 3)}}


def depth_metrics(totals: dict[str, float]) -> dict[str, float]:
    """AbsRel, RMSE (metres), log10, and delta < 1.25^k as fractions, over every valid pixel of the set."""
    n = totals["count"]
    if n == 0:
        raise ConfigError("depth metrics: no pixel with a known depth")
    return {"abs_rel": totals["abs_rel"] / n, "rmse": math.sqrt(totals["sq"] / n), "log10": totals["log10"] / n,
            **{f"delta{k}": totals[f"d{k}"] / n for k in (1, 2, 3)}, "pixels": int(n)}


def add_errors(totals: dict[str, float], errors: dict[str, float]) -> None:
    for key, value in errors.items():
        totals[key] = totals.get(key, 0.0) + value


@dataclass(frozen=True)
class DepthOptions:
    """DepthCLIP's temperature (the words, bins and prompt are the paper's)."""

    temperature: float = option(0.1, "softmax temperature over the distance words", low=1e-6, what="a temperature")


@register_task("depth", needs={"depth"}, summary="DepthCLIP: AbsRel, RMSE, log10, delta<1.25^k (NYU-style depth)",
               head_role=NO_HEAD,
               options=DepthOptions)
def run_depth(ctx: EvalContext, reader, options: DepthOptions) -> tuple[dict, int]:
    """Training-free depth of each image in each dense mode against its metric depth map."""
    def collate(samples: list[Sample]) -> list[list[Sample]]:
        return [samples]
    result, seen = {}, 0
    for mode in ctx.modes:
        config = DepthClipConfig(temperature=options.temperature, mode=mode, short_side=ctx.short_side)
        totals: dict[str, float] = {}
        seen = 0
        for batch in sample_batches(reader, ctx.settings.batch_size, ctx.data.skips, collate):
            for sample in batch:
                add_errors(totals, depth_errors(depth(ctx.bundle, sample.image, config), sample.depth))
                seen += 1
        result[mode] = depth_metrics(totals)
    return result, seen


@dataclass(frozen=True)
class PointsOptions:
    """How clouds become views."""

    projection: str = option("v1", "PointCLIP's projection: v1 (z-buffer depth) or v2 (realistic)",
                             choices=("v1", "v2"))
    templates: str = option("pointclip", "prompt set of the class names (pointclip, pointclip-v2, or any set)")


@register_task("points-zeroshot", head_role=NO_HEAD, needs={"points", "image_label"},
               summary="PointCLIP zero-shot top-1 on point clouds (ModelNet layouts), 6 views, equal weights",
               options=PointsOptions)
def run_points_zeroshot(ctx: EvalContext, reader: ModelNetPoints, options: PointsOptions) -> tuple[dict, int]:
    """Top-1 of the views' summed logits over the reader's classes."""
    features, labels = point_features(ctx.bundle, reader, PointViewSettings(projection=options.projection),
                                      batch_size=ctx.settings.batch_size)
    logits = combine_views(view_logits(ctx.bundle, features.to(ctx.device), reader.classes, options.templates),
                           None).cpu()
    top1 = float((logits.argmax(-1) == labels).float().mean() * 100)
    return {"top1": top1, "num_samples": len(labels), "num_classes": len(reader.classes),
            "chance": 100 / len(reader.classes)}, len(labels)
