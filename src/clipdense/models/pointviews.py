"""Depth views of point clouds without a renderer: PointCLIP's projection (V1) and its realistic one (V2).

Cameras use OpenCV's frame (x right, y down, z forward). A view is a rotation ``R`` whose rows are the camera's
right, down and forward axes in world coordinates (z up); the camera sits ``distance`` units behind the origin
along its forward axis, so a point ``p`` has camera coordinates ``q = R p`` and depth ``q_z + distance``. Its
perspective image coordinates ``u = focal * q_x / depth``, ``v = focal * q_y / depth`` in [-1, 1] map to pixel
column ``floor((u + 1) / 2 * S)`` and row ``floor((v + 1) / 2 * S)`` of an ``S`` x ``S`` view. The default focal
length makes the unit sphere just fill the view.

- V1 (Zhang et al., CVPR 2022): each point marks its pixel (or a ``point_size`` square) with its depth; a pixel
  keeps the nearest depth (a z-buffer); empty pixels are 0.
- V2 (Zhu et al., ICCV 2023): points are quantised into a ``S`` x ``S`` x ``D`` voxel grid holding an intensity
  (near = 1, the far end of the sphere = ``FAR_INTENSITY``); the grid is densified by a 3-D max-pool, smoothed
  by a 3-D Gaussian, and squeezed by the max over depth into a dense, smooth view.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from open_clip import get_model_preprocess_cfg

from ..errors import ConfigError

#: intensity of the farthest point of the unit sphere (the nearest is 1, empty pixels 0)
FAR_INTENSITY = 0.3


def look_at(forward: tuple[float, float, float], up: tuple[float, float, float] = (0.0, 0.0, 1.0)) -> torch.Tensor:
    """(3, 3) rotation whose rows are the camera's right, down and forward axes (forward = viewing direction)."""
    f = F.normalize(torch.tensor(forward, dtype=torch.float64), dim=0)
    right = torch.linalg.cross(f, torch.tensor(up, dtype=torch.float64))
    right = F.normalize(right, dim=0)
    down = torch.linalg.cross(f, right)
    return torch.stack([right, down, f]).float()


def view_rotations(count: int = 6) -> torch.Tensor:
    """(M, 3, 3) cameras: 6 = front, back, right, left (horizontal), top, bottom (PointCLIP's zero-shot views);
    10 adds four views 30 degrees above the horizon between them (its few-shot views)."""
    side = [(0, 1, 0), (0, -1, 0), (-1, 0, 0), (1, 0, 0)]
    views = [look_at(d) for d in side] + [look_at((0, 0, -1), up=(0, 1, 0)), look_at((0, 0, 1), up=(0, 1, 0))]
    if count == 10:
        e = math.radians(30)
        views += [look_at((math.cos(a) * math.cos(e), math.sin(a) * math.cos(e), -math.sin(e)))
                  for a in (math.radians(d) for d in (45, 135, 225, 315))]
    elif count != 6:
        raise ValueError(f"views: 6 (zero-shot) or 10 (few-shot), got {count}")
    return torch.stack(views)


def normalize_points(points: torch.Tensor) -> torch.Tensor:
    """(B, N, 3) clouds centred on their bounding box and scaled into the unit sphere (as ModelNet's are)."""
    centre = (points.amax(1, keepdim=True) + points.amin(1, keepdim=True)) / 2
    centred = points - centre
    return centred / centred.norm(dim=-1).amax(1).clamp_min(1e-12)[:, None, None]


@dataclass(frozen=True)
class Camera:
    """The views' shared intrinsics: image side ``size``, camera ``distance`` from the origin, ``focal`` length
    (None: the unit sphere fills the view)."""

    size: int = 64
    distance: float = 2.0
    focal: float | None = None

    @property
    def focal_length(self) -> float:
        return self.focal if self.focal is not None else math.sqrt(self.distance ** 2 - 1)


def camera_coordinates(points: torch.Tensor, rotations: torch.Tensor, camera: Camera
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per view and point: (row, column) pixel indices (long), depth, and whether the point is in the view.
    ``points`` (B, N, 3), ``rotations`` (M, 3, 3) -> each (B, M, N)."""
    q = torch.einsum("mij,bnj->bmni", rotations.to(points), points)
    depth = q[..., 2] + camera.distance
    safe = depth.clamp_min(1e-6)
    u, v = camera.focal_length * q[..., 0] / safe, camera.focal_length * q[..., 1] / safe
    col = torch.floor((u + 1) / 2 * camera.size).long()
    row = torch.floor((v + 1) / 2 * camera.size).long()
    inside = (depth > 1e-6) & (col >= 0) & (col < camera.size) & (row >= 0) & (row < camera.size)
    return row, col, depth, inside


def project_depth(points: torch.Tensor, rotations: torch.Tensor, camera: Camera = Camera(),
                  point_size: int = 1) -> torch.Tensor:
    """PointCLIP V1: (B, M, S, S) depth maps, each pixel the nearest depth of the points that fall on it (a
    ``point_size`` square centred on the point's pixel), 0 where no point falls."""
    row, col, depth, inside = camera_coordinates(points, rotations, camera)
    b, m, n = depth.shape
    s = camera.size
    offsets = range(-(point_size // 2), point_size - point_size // 2)
    buffer = torch.full((b * m * s * s,), float("inf"), dtype=depth.dtype, device=depth.device)
    base = torch.arange(b * m, device=depth.device).reshape(b, m, 1) * s * s
    for dr in offsets:
        for dc in offsets:
            r, c = row + dr, col + dc
            keep = inside & (r >= 0) & (r < s) & (c >= 0) & (c < s)
            index = (base + r.clamp(0, s - 1) * s + c.clamp(0, s - 1))[keep]
            buffer.scatter_reduce_(0, index, depth[keep], reduce="amin")
    buffer[torch.isinf(buffer)] = 0
    return buffer.reshape(b, m, s, s)


def depth_intensity(depth: torch.Tensor, camera: Camera) -> torch.Tensor:
    """Depth -> brightness: 1 at the unit sphere's nearest depth, ``FAR_INTENSITY`` at its farthest, 0 where
    the depth is 0 (empty)."""
    near, far = camera.distance - 1, camera.distance + 1
    value = 1 - (1 - FAR_INTENSITY) * (depth - near) / (far - near)
    return torch.where(depth > 0, value.clamp(FAR_INTENSITY, 1.0), torch.zeros_like(depth))


def gaussian_kernel1d(size: int, sigma: float) -> torch.Tensor:
    """(size,) Gaussian weights at offsets -(size-1)/2 .. (size-1)/2, normalised to sum 1."""
    x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    return g / g.sum()


def gaussian_kernel3d(size: int, sigma: float) -> torch.Tensor:
    """(size, size, size) separable Gaussian, normalised to sum 1."""
    g = gaussian_kernel1d(size, sigma)
    return g[:, None, None] * g[None, :, None] * g[None, None, :]


@dataclass(frozen=True)
class RealisticProjection:
    """PointCLIP V2's projection settings: ``depth_bins`` voxels along depth, the max-pool ``densify`` kernel
    (odd; 1 = off) and the Gaussian ``smooth`` kernel size (odd; 1 = off) with its ``sigma``."""

    depth_bins: int = 16
    densify: int = 3
    smooth: int = 3
    sigma: float = 1.0


def voxelize(points: torch.Tensor, rotations: torch.Tensor, camera: Camera, depth_bins: int) -> torch.Tensor:
    """(B*M, 1, D, S, S) grids: each voxel the largest ``depth_intensity`` of the points in it (0 if none);
    the depth index is ``floor((depth - (distance - 1)) / 2 * D)`` clipped to [0, D)."""
    row, col, depth, inside = camera_coordinates(points, rotations, camera)
    b, m, _ = depth.shape
    s = camera.size
    k = torch.floor((depth - (camera.distance - 1)) / 2 * depth_bins).long().clamp(0, depth_bins - 1)
    base = torch.arange(b * m, device=depth.device).reshape(b, m, 1) * depth_bins * s * s
    index = (base + (k * s + row.clamp(0, s - 1)) * s + col.clamp(0, s - 1))[inside]
    grid = torch.zeros(b * m * depth_bins * s * s, dtype=depth.dtype, device=depth.device)
    grid.scatter_reduce_(0, index, depth_intensity(depth, camera)[inside], reduce="amax")
    return grid.reshape(b * m, 1, depth_bins, s, s)


def densify_and_smooth(grid: torch.Tensor, settings: RealisticProjection) -> torch.Tensor:
    """V2's densify (3-D max-pool, stride 1) and smooth (3-D Gaussian) steps on (K, 1, D, S, S) grids."""
    if settings.densify > 1:
        grid = F.max_pool3d(grid, settings.densify, stride=1, padding=settings.densify // 2)
    if settings.smooth > 1:   # the 3-D Gaussian is separable: three 1-D passes (= one conv with gaussian_kernel3d)
        g = gaussian_kernel1d(settings.smooth, settings.sigma).to(grid)
        pad = settings.smooth // 2
        for shape, padding in (((-1, 1, 1), (pad, 0, 0)), ((1, -1, 1), (0, pad, 0)), ((1, 1, -1), (0, 0, pad))):
            grid = F.conv3d(grid, g.reshape(1, 1, *shape), padding=padding)
    return grid


def project_realistic(points: torch.Tensor, rotations: torch.Tensor, camera: Camera = Camera(),
                      settings: RealisticProjection = RealisticProjection()) -> torch.Tensor:
    """PointCLIP V2: (B, M, S, S) intensity views (voxelise, densify, smooth, max over depth)."""
    b, m = points.shape[0], rotations.shape[0]
    grid = densify_and_smooth(voxelize(points, rotations, camera, settings.depth_bins), settings)
    return grid.amax(dim=2).reshape(b, m, camera.size, camera.size)


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
    cfg = get_model_preprocess_cfg(bundle.model)
    mean, std = (torch.tensor(cfg[k], device=device).view(1, 3, 1, 1) for k in ("mean", "std"))
    pixels = (views.reshape(b * m, 1, side, side).expand(-1, 3, -1, -1) - mean) / std
    features = bundle.model.encode_image(pixels)
    return F.normalize(features.float(), dim=-1).reshape(b, m, -1)
