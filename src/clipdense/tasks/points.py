"""Point clouds classified by a 2-D CLIP through depth views: PointCLIP V1 and V2's zero-shot protocol.

A cloud is projected into M views (``models.pointviews``), each view encoded by the image tower, scored against
the prompts of the class names, and the views' logits summed with per-view weights (found by a grid search on a
small held-out set, ``search_view_weights``; equal weights by default).

    probs = cd.classify_points(bundle, points, ["sphere", "cube", "cone"])      # (C,) probabilities
"""
from __future__ import annotations

import itertools
import os
from typing import Any, Sequence

import torch

from ..data.formats.modelnet import check_points, read_point_file
from ..errors import ConfigError
from ..models.pointviews import PROJECTIONS, PointViewSettings, encode_point_views, view_images
from ..models.text import Template, text_classifier

__all__ = ["PROJECTIONS", "PointViewSettings", "classify_points", "classify_point_file", "combine_views",
           "encode_point_views", "search_view_weights", "view_images", "view_logits"]


def view_logits(bundle: Any, features: torch.Tensor, classes: Sequence[str],
                templates: str | Sequence[Template] = "pointclip") -> torch.Tensor:
    """(B, M, C) scaled cosine of each view's feature with each class's prompts."""
    text = text_classifier(bundle, list(classes), templates).to(features.device)
    return bundle.model.logit_scale.exp().float() * features @ text.T


def combine_views(logits: torch.Tensor, weights: Sequence[float] | torch.Tensor | None) -> torch.Tensor:
    """(B, C) = sum over views of weight x logits (None: weight 1 each)."""
    if weights is None:
        return logits.sum(1)
    w = torch.as_tensor(weights, dtype=logits.dtype, device=logits.device)
    if w.shape != (logits.shape[1],):
        raise ConfigError(f"view_weights: expected {logits.shape[1]} weights (one per view), got {tuple(w.shape)}")
    return torch.einsum("bmc,m->bc", logits, w)


@torch.no_grad()
def classify_points(bundle: Any, points: Any, classes: Sequence[str], templates: str | Sequence[Template] = "pointclip",
                    settings: PointViewSettings = PointViewSettings(),
                    view_weights: Sequence[float] | None = None) -> torch.Tensor:
    """(C,) class probabilities of one point cloud ((N, 3) array or tensor; an empty, NaN or all-equal cloud is
    refused in one line): softmax of the view-weighted sum of the views' logits."""
    if not classes:
        raise ConfigError("classes: empty list")
    cloud = torch.from_numpy(check_points(points, "classify_points"))[None]
    logits = view_logits(bundle, encode_point_views(bundle, cloud, settings), classes, templates)
    return combine_views(logits, view_weights).float().softmax(-1)[0].cpu()


def classify_point_file(bundle: Any, path: str | os.PathLike, classes: list[str],
                        templates: str | Sequence[Template]) -> torch.Tensor:
    """``FILE_CLASSIFIERS``' entry for point files (.off meshes sampled to 1024 points, .xyz / .pts); the
    paper's prompt is ``templates="pointclip"`` (``clipdense classify SHAPE.off --templates pointclip``)."""
    return classify_points(bundle, read_point_file(path), classes, templates)


def search_view_weights(logits: torch.Tensor, labels: torch.Tensor,
                        grid: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0)) -> tuple[list[float], float]:
    """PointCLIP's view search: every combination of ``grid`` values as view weights on a held-out set's
    (N, M, C) view logits; the weights with the best accuracy (ties: the first found, equal weights tried
    first) and that accuracy in percent."""
    m = logits.shape[1]
    candidates = [tuple([1.0] * m)] + [w for w in itertools.product(grid, repeat=m) if any(w)]
    weights = torch.tensor(candidates, dtype=logits.dtype)
    best, best_acc = candidates[0], -1.0
    for start in range(0, len(candidates), 4096):
        chunk = weights[start:start + 4096]
        predicted = torch.einsum("nmc,km->knc", logits.cpu(), chunk).argmax(-1)
        acc = (predicted == labels.cpu()[None]).float().mean(1) * 100
        top = int(acc.argmax())
        if float(acc[top]) > best_acc:
            best, best_acc = candidates[start + top], float(acc[top])
    return [float(w) for w in best], best_acc
