"""A differentiable vector rasteriser in plain torch: cubic Bézier paths → an RGB picture.

Why not diffvg: it is a compiled extension that is not on the package registry and fails to build for many of
its users. This one is slower and simpler, and enough for CLIP guidance at CLIP's input sizes.

Model (diffvg's, without its analytic prefilter):
- a path is a chain of cubic Bézier segments given by control points in pixel units (x right, y down, the
  picture's top-left corner at (0, 0), pixel (i, j)'s centre at (j + 0.5, i + 0.5) — SVG's user space);
  open: ``3n + 1`` points for n segments; closed: ``3n`` points, the last segment ends at the first point;
- each segment is sampled at ``samples`` values of t; a pixel's distance d is its distance to that polyline
  (so stroke ends and joins are round, as SVG's ``stroke-linecap="round"``);
- stroke coverage ``clamp(w/2 - d + 1/2, 0, 1)``: a one-pixel linear ramp centred on the stroke's edge, which
  integrates to exactly the stroke's width across a straight stroke; fill coverage (closed paths) is the same
  ramp on the signed distance, the sign from the even-odd rule;
- layers are composited in order with the ``over`` operator onto an opaque background, fill before stroke.
Gradients reach control points, widths and colours through d and the ramp (pixels on the ramp: the edges).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F

from ..errors import ConfigError

#: samples of t per Bézier segment when rendering
DEFAULT_SAMPLES = 16


@dataclass
class VectorPath:
    """One path: control points (P, 2) in pixels, stroke width (px), stroke RGBA, and for a closed path an
    optional fill RGBA; all tensors may require grad."""

    points: torch.Tensor
    width: torch.Tensor
    stroke: torch.Tensor
    closed: bool = False
    fill: torch.Tensor | None = None

    def __post_init__(self) -> None:
        count = self.points.shape[0]
        if self.points.ndim != 2 or self.points.shape[1] != 2:
            raise ConfigError(f"path points: expected a (P, 2) tensor, got {tuple(self.points.shape)}")
        if (count % 3 != 0 or count < 3) if self.closed else (count % 3 != 1 or count < 4):
            kind = "closed: 3n (n >= 1)" if self.closed else "open: 3n + 1 (n >= 1)"
            raise ConfigError(f"path of {count} control points: a cubic Bézier path has {kind} points")
        if self.fill is not None and not self.closed:
            raise ConfigError("path fill: only a closed path can be filled")

    @property
    def segments(self) -> torch.Tensor:
        """(n, 4, 2) control points of each cubic segment."""
        pts = torch.cat([self.points, self.points[:1]]) if self.closed else self.points
        n = (pts.shape[0] - 1) // 3
        index = torch.arange(n, device=pts.device)[:, None] * 3 + torch.arange(4, device=pts.device)
        return pts[index]

    def detached(self) -> "VectorPath":
        """A copy of plain tensors (no graph), for saving and for the best-so-far picture."""
        return VectorPath(self.points.detach().clone(), self.width.detach().clone(), self.stroke.detach().clone(),
                          self.closed, None if self.fill is None else self.fill.detach().clone())


@dataclass
class Drawing:
    """Paths on a canvas of ``size`` = (H, W) pixels over an opaque RGB ``background`` in [0, 1], or over a
    ``raster`` picture (3, H, W) in [0, 1] when one is given (VQGAN-CLIP's output is a raster and no paths)."""

    paths: list[VectorPath]
    size: tuple[int, int]
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    meta: dict[str, str] = field(default_factory=dict)
    raster: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.raster is not None and tuple(self.raster.shape) != (3, *self.size):
            raise ConfigError(f"drawing raster: expected a (3, {self.size[0]}, {self.size[1]}) picture, "
                              f"got {tuple(self.raster.shape)}")

    def detached(self) -> "Drawing":
        raster = None if self.raster is None else self.raster.detach().clone()
        return Drawing([p.detached() for p in self.paths], self.size, self.background, dict(self.meta), raster)


def bernstein(samples: int, device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(samples, 4) cubic Bernstein weights at t = 0 .. 1 (both ends included)."""
    t = torch.linspace(0.0, 1.0, samples, device=device, dtype=dtype)[:, None]
    s = 1.0 - t
    return torch.cat([s ** 3, 3 * s * s * t, 3 * s * t * t, t ** 3], dim=1)


def sample_path(path: VectorPath, samples: int = DEFAULT_SAMPLES) -> torch.Tensor:
    """(S, 2) points of the path's polyline: ``samples`` per segment, segments joined end to start."""
    if samples < 2:
        raise ConfigError(f"samples: expected >= 2 points per segment, got {samples}")
    weights = bernstein(samples, path.points.device, path.points.dtype)
    curve = torch.einsum("kj,njd->nkd", weights, path.segments)          # (n, samples, 2)
    joined = torch.cat([curve[:, :-1].reshape(-1, 2), curve[-1:, -1]])    # drop the repeated joints
    return joined


def _window(polyline: torch.Tensor, margin: float, size: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """Pixel rows/columns [y0, y1) x [x0, x1) that the path can touch (from detached values)."""
    low = torch.floor(polyline.detach().min(0).values - margin)
    high = torch.ceil(polyline.detach().max(0).values + margin)
    if not (torch.isfinite(low).all() and torch.isfinite(high).all()):
        raise ConfigError("path points are not finite (NaN or inf): the optimisation diverged")
    x0, y0 = max(int(low[0]), 0), max(int(low[1]), 0)
    x1, y1 = min(int(high[0]) + 1, size[1]), min(int(high[1]) + 1, size[0])
    return (y0, y1, x0, x1) if x0 < x1 and y0 < y1 else None


def _pixel_centres(window: tuple[int, int, int, int], like: torch.Tensor) -> torch.Tensor:
    y0, y1, x0, x1 = window
    ys = torch.arange(y0, y1, device=like.device, dtype=like.dtype) + 0.5
    xs = torch.arange(x0, x1, device=like.device, dtype=like.dtype) + 0.5
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], dim=1)  # (N, 2) as (x, y)


def polyline_distance(pixels: torch.Tensor, polyline: torch.Tensor) -> torch.Tensor:
    """(N,) distance of each pixel centre to the polyline (S, 2): the nearest point on any of its edges."""
    a, b = polyline[:-1], polyline[1:]
    ab = b - a                                                            # (E, 2)
    ap = pixels[:, None, :] - a[None]                                     # (N, E, 2)
    t = ((ap * ab).sum(-1) / (ab * ab).sum(-1).clamp_min(1e-12)).clamp(0.0, 1.0)
    offset = ap - t[..., None] * ab
    squared = (offset * offset).sum(-1).min(dim=1).values
    return torch.sqrt(squared + 1e-12)


def inside_even_odd(pixels: torch.Tensor, polygon: torch.Tensor) -> torch.Tensor:
    """(N,) bool: pixel centres inside the closed polygon (S, 2) by the even-odd rule (SVG ``fill-rule``)."""
    a, b = polygon.detach(), torch.roll(polygon.detach(), -1, dims=0)
    px, py = pixels[:, None, 0], pixels[:, None, 1]
    straddles = (a[None, :, 1] > py) != (b[None, :, 1] > py)
    dy = torch.where(b[:, 1] == a[:, 1], torch.ones_like(a[:, 1]), b[:, 1] - a[:, 1])
    crossing_x = a[None, :, 0] + (py - a[None, :, 1]) * (b[None, :, 0] - a[None, :, 0]) / dy[None]
    crossings = (straddles & (px < crossing_x)).sum(dim=1)
    return crossings % 2 == 1


def ramp(signed: torch.Tensor) -> torch.Tensor:
    """Coverage of a pixel whose centre is ``signed`` px inside an edge: a one-pixel linear ramp."""
    return (signed + 0.5).clamp(0.0, 1.0)


def _over(canvas: torch.Tensor, coverage: torch.Tensor, rgba: torch.Tensor,
          window: tuple[int, int, int, int]) -> torch.Tensor:
    """``canvas`` (3, H, W) with a layer of ``coverage`` (h, w) in ``window`` painted in ``rgba`` over it."""
    y0, y1, x0, x1 = window
    alpha = F.pad(coverage, (x0, canvas.shape[2] - x1, y0, canvas.shape[1] - y1)) * rgba[3]
    return canvas * (1.0 - alpha) + rgba[:3, None, None] * alpha


def render(drawing: Drawing, samples: int = DEFAULT_SAMPLES) -> torch.Tensor:
    """The drawing as a (3, H, W) RGB tensor in [0, 1], differentiable in every path tensor."""
    height, width = drawing.size
    like = drawing.paths[0].points if drawing.paths else torch.zeros(())
    if drawing.raster is not None:
        canvas = drawing.raster.to(like.dtype if drawing.paths else drawing.raster.dtype)
    else:
        canvas = torch.tensor(drawing.background, dtype=like.dtype, device=like.device)[:, None, None]
        canvas = canvas.expand(3, height, width)
    for path in drawing.paths:
        polyline = sample_path(path, samples)
        half = path.width / 2
        window = _window(polyline, float(half.detach().clamp_min(0)) + 1.0, (height, width))
        if window is None:
            continue
        pixels = _pixel_centres(window, polyline)
        shape = (window[1] - window[0], window[3] - window[2])
        distance = polyline_distance(pixels, torch.cat([polyline, polyline[:1]]) if path.closed else polyline)
        if path.fill is not None:
            sign = torch.where(inside_even_odd(pixels, polyline), 1.0, -1.0).to(distance.dtype)
            canvas = _over(canvas, ramp(sign * distance).reshape(shape), path.fill, window)
        canvas = _over(canvas, ramp(half - distance).reshape(shape), path.stroke, window)
    return canvas


def render_batch(drawings: Sequence[Drawing], samples: int = DEFAULT_SAMPLES) -> torch.Tensor:
    """(B, 3, H, W) for drawings of one size."""
    return torch.stack([render(d, samples) for d in drawings])


def circle_path(centre: tuple[float, float], radius: float, width: float, stroke: Sequence[float],
                fill: Sequence[float] | None = None, dtype: torch.dtype = torch.float32) -> VectorPath:
    """A closed circle of four cubic segments (control arm 0.5523 r, the usual quarter-circle fit)."""
    k = 0.5522847498 * radius
    cx, cy = centre
    quarter = [(cx + radius, cy), (cx + radius, cy + k), (cx + k, cy + radius), (cx, cy + radius),
               (cx - k, cy + radius), (cx - radius, cy + k), (cx - radius, cy), (cx - radius, cy - k),
               (cx - k, cy - radius), (cx, cy - radius), (cx + k, cy - radius), (cx + radius, cy - k)]
    return VectorPath(torch.tensor(quarter, dtype=dtype), torch.tensor(width, dtype=dtype),
                      torch.tensor(list(stroke), dtype=dtype), closed=True,
                      fill=None if fill is None else torch.tensor(list(fill), dtype=dtype))
