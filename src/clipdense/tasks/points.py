"""Point clouds classified by a 2-D CLIP through depth views: PointCLIP V1 and V2's zero-shot protocol.

A cloud is projected into M views (``models.pointviews``), each view encoded by the image tower, scored against
the prompts of the class names, and the views' logits summed with per-view weights (found by a grid search on a
small held-out set, ``search_view_weights``; equal weights by default).

    probs = cd.classify_points(bundle, points, ["sphere", "cube", "cone"])      # (C,) probabilities
"""
from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from ..data.formats.modelnet import check_points, read_point_file
from ..errors import ConfigError
from ..models.pointviews import (Camera, RealisticProjection, depth_intensity, normalize_points, project_depth,
                                 project_realistic, view_rotations)
from ..models.text import Template, text_classifier
from .images import normalisation

PROJECTIONS = ("v1", "v2")


@dataclass(frozen=True)
class PointViewSettings:
    """How clouds become views.

    Args:
        projection: ``v1`` (sparse z-buffer depth) or ``v2`` (voxelise, densify, smooth, max over depth).
        views: 6 (zero-shot) or 10 (few-shot).
        point_size: V1's square of pixels per point (1 = one pixel, as the paper).
        distance: camera distance from the centre of the unit sphere.
    """

    projection: str = "v1"
    views: int = 6
    point_size: int = 1
    distance: float = 2.0

    def validate(self) -> None:
        if self.projection not in PROJECTIONS:
            raise ConfigError(f"projection {self.projection!r}: expected one of {PROJECTIONS}")
        if self.views not in (6, 10):
            raise ConfigError(f"views {self.views}: expected 6 (zero-shot) or 10 (few-shot)")
        if self.point_size < 1 or self.distance <= 1:
            raise ConfigError(f"point_size {self.point_size} / distance {self.distance}: expected >= 1 / > 1")


def view_images(points: torch.Tensor, size: int, settings: PointViewSettings) -> torch.Tensor:
    """(B, M, S, S) view intensities in [0, 1] of (B, N, 3) clouds (normalised into the unit sphere first)."""
    settings.validate()
    camera = Camera(size=size, distance=settings.distance)
    clouds, rotations = normalize_points(points.float()), view_rotations(settings.views)
    if settings.projection == "v1":
        return depth_intensity(project_depth(clouds, rotations, camera, settings.point_size), camera)
    return project_realistic(clouds, rotations, camera, RealisticProjection())


@torch.no_grad()
def encode_point_views(bundle: Any, points: torch.Tensor, settings: PointViewSettings = PointViewSettings()
                       ) -> torch.Tensor:
    """(B, M, D) unit-norm image-tower features of each cloud's M views (grey views as RGB, the model's
    normalisation, at its native input size)."""
    device = next(bundle.model.parameters()).device
    side = bundle.image_size[0] if isinstance(bundle.image_size, (tuple, list)) else int(bundle.image_size)
    views = view_images(points.to(device), side, settings)
    b, m = views.shape[:2]
    mean, std = (torch.tensor(v, device=device).view(1, 3, 1, 1) for v in normalisation(bundle.model))
    pixels = (views.reshape(b * m, 1, side, side).expand(-1, 3, -1, -1) - mean) / std
    features = bundle.model.encode_image(pixels)
    return F.normalize(features.float(), dim=-1).reshape(b, m, -1)


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
    return combine_views(logits, view_weights).softmax(-1)[0].cpu()


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
