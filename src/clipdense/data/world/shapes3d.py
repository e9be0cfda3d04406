"""The 3-D world: triangle meshes of primitives, placed at random, with surface-sampled point clouds.

Each shape is a pure function of (config, split, class, index): a mesh in ModelNet's convention (z up, roughly
unit size), scaled per axis within a range that keeps the class recognisable and turned about the vertical axis
(with a small tilt). The point clouds can be made ScanObjectNN-like: jitter, a partial view (the points behind a
random cut plane removed) and clutter (points of a small foreign object beside the shape).

Meshes are plain numpy: ``vertices`` (V, 3) float and ``faces`` (F, 3) int triangles.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ...errors import ConfigError

Mesh = tuple[np.ndarray, np.ndarray]   # (vertices (V, 3) float64, faces (F, 3) int64)


def _revolve(profile: np.ndarray, segments: int = 32, closed: bool = False) -> Mesh:
    """A surface of revolution about z: ``profile`` (K, 2) = (radius, z) from bottom to top; ``closed`` joins the
    last profile point back to the first (a torus)."""
    angles = np.arange(segments) * 2 * np.pi / segments
    r, z = profile[:, :1], profile[:, 1:]
    vertices = np.stack([r * np.cos(angles), r * np.sin(angles), np.repeat(z, segments, 1)], -1).reshape(-1, 3)
    rows = len(profile) if closed else len(profile) - 1
    faces = []
    for i in range(rows):
        i2 = (i + 1) % len(profile)
        for j in range(segments):
            j2 = (j + 1) % segments
            a, b, c, d = i * segments + j, i * segments + j2, i2 * segments + j2, i2 * segments + j
            faces += [(a, b, c), (a, c, d)]
    return vertices, np.asarray(faces, dtype=np.int64)


def _polyhedron(vertices: list[tuple[float, float, float]], polygons: list[tuple[int, ...]]) -> Mesh:
    """Convex faces given as vertex loops, fan-triangulated."""
    faces = [(loop[0], loop[k], loop[k + 1]) for loop in polygons for k in range(1, len(loop) - 1)]
    return np.asarray(vertices, dtype=np.float64), np.asarray(faces, dtype=np.int64)


def sphere() -> Mesh:
    t = np.linspace(-np.pi / 2, np.pi / 2, 17)
    return _revolve(np.stack([np.cos(t), np.sin(t)], 1))


def cube() -> Mesh:
    v = [(x, y, z) for z in (-1, 1) for y in (-1, 1) for x in (-1, 1)]
    return _polyhedron([tuple(0.75 * c for c in p) for p in v],
                       [(0, 2, 3, 1), (4, 5, 7, 6), (0, 1, 5, 4), (2, 6, 7, 3), (0, 4, 6, 2), (1, 3, 7, 5)])


def cylinder() -> Mesh:
    return _revolve(np.array([[0, -1], [0.6, -1], [0.6, 1], [0, 1]], dtype=float))


def cone() -> Mesh:
    return _revolve(np.array([[0, -1], [0.8, -1], [0, 1]], dtype=float))


def torus() -> Mesh:
    t = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    return _revolve(np.stack([0.7 + 0.3 * np.cos(t), 0.3 * np.sin(t)], 1), closed=True)


def pyramid() -> Mesh:
    s = 0.85
    return _polyhedron([(-s, -s, -0.8), (s, -s, -0.8), (s, s, -0.8), (-s, s, -0.8), (0, 0, 0.9)],
                       [(0, 3, 2, 1), (0, 1, 4), (1, 2, 4), (2, 3, 4), (3, 0, 4)])


def capsule() -> Mesh:
    t = np.linspace(0, np.pi / 2, 8)
    bottom = np.stack([0.4 * np.sin(t), -0.6 - 0.4 * np.cos(t)], 1)
    top = np.stack([0.4 * np.cos(t), 0.6 + 0.4 * np.sin(t)], 1)
    return _revolve(np.concatenate([bottom, top]))


def prism() -> Mesh:
    corners = [(np.cos(a), np.sin(a)) for a in np.pi / 2 + np.arange(3) * 2 * np.pi / 3]
    v = [(0.9 * x, 0.9 * y, z) for z in (-0.8, 0.8) for x, y in corners]
    return _polyhedron(v, [(0, 2, 1), (3, 4, 5), (0, 1, 4, 3), (1, 2, 5, 4), (2, 0, 3, 5)])


#: class name -> mesh factory (unit-ish size, z up). The names are the classes of the 3-D world.
PRIMITIVES: dict[str, Callable[[], Mesh]] = {
    "sphere": sphere, "cube": cube, "cylinder": cylinder, "cone": cone,
    "torus": torus, "pyramid": pyramid, "capsule": capsule, "prism": prism,
}


def face_areas_normals(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(F,) triangle areas and (F, 3) unit normals (zero for degenerate triangles)."""
    a, b, c = (vertices[faces[:, k]] for k in range(3))
    cross = np.cross(b - a, c - a)
    norm = np.linalg.norm(cross, axis=1)
    return norm / 2, cross / np.maximum(norm, 1e-12)[:, None]


def sample_surface(vertices: np.ndarray, faces: np.ndarray, count: int,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``count`` points uniform on the surface (triangle chosen by area, uniform barycentric coordinates by the
    square-root rule) and the normal of the triangle each lies on: ((count, 3), (count, 3))."""
    areas, normals = face_areas_normals(vertices, faces)
    total = areas.sum()
    if not np.isfinite(total) or total <= 0:
        raise ValueError("the mesh has no surface area to sample")
    chosen = rng.choice(len(faces), size=count, p=areas / total)
    r1, r2 = np.sqrt(rng.random(count))[:, None], rng.random(count)[:, None]
    a, b, c = (vertices[faces[chosen, k]] for k in range(3))
    return (1 - r1) * a + r1 * (1 - r2) * b + r1 * r2 * c, normals[chosen]


def rotation_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def rotation_x(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


@dataclass
class Shapes3DConfig:
    """Everything that defines a 3-D world (``clipdense data synth --points``).

    Args:
        classes: primitive names (``PRIMITIVES``).
        train_per_class / test_per_class: shapes per class in ModelNet's train and test splits.
        points: points per resampled cloud (ModelNet40's resampled files hold 10 000).
        min_scale / max_scale: per-axis scale range (kept narrow so a cube stays a cube).
        max_tilt: largest tilt away from upright, degrees (any turn about the vertical axis).
        noise: Gaussian jitter of the points, in units of the shape's radius.
        partial_fraction: share of clouds seen from one side only (points behind a random plane dropped).
        clutter_fraction: share of clouds with a small foreign object's points beside the shape.
        seed: the world seed.
    """

    classes: list[str] = field(default_factory=lambda: list(PRIMITIVES))
    train_per_class: int = 24
    test_per_class: int = 12
    points: int = 2048
    min_scale: float = 0.8
    max_scale: float = 1.2
    max_tilt: float = 15.0
    noise: float = 0.0
    partial_fraction: float = 0.0
    clutter_fraction: float = 0.0
    seed: int = 0

    def validate(self) -> None:
        unknown = [c for c in self.classes if c not in PRIMITIVES]
        if unknown or not self.classes or len(set(self.classes)) != len(self.classes):
            raise ConfigError(f"3-D classes: expected unique names from {sorted(PRIMITIVES)}, got {self.classes}")
        if not 0 < self.min_scale <= self.max_scale or self.points < 1 or self.noise < 0:
            raise ConfigError("3-D world: expected 0 < min_scale <= max_scale, points >= 1, noise >= 0")
        for name in ("partial_fraction", "clutter_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"3-D world: {name} must be a probability, got {getattr(self, name)}")


SPLITS = {"train": 0, "test": 1}


def shape_rng(config: Shapes3DConfig, split: str, class_name: str, index: int) -> np.random.Generator:
    """The generator of one shape: a pure function of the world seed and the shape's identity."""
    return np.random.default_rng([config.seed, SPLITS[split], sorted(PRIMITIVES).index(class_name), index])


def make_mesh(config: Shapes3DConfig, class_name: str, rng: np.random.Generator) -> Mesh:
    """One placed instance of ``class_name``: scaled per axis, tilted, turned about z."""
    vertices, faces = PRIMITIVES[class_name]()
    scale = rng.uniform(config.min_scale, config.max_scale, size=3)
    if class_name in ("sphere", "cube"):     # a stretched sphere or cube is another thing: scale them uniformly
        scale[:] = scale[0]
    tilt = np.deg2rad(rng.uniform(-config.max_tilt, config.max_tilt))
    turn = rng.uniform(0, 2 * np.pi)
    rotation = rotation_z(turn) @ rotation_x(tilt)
    return (vertices * scale) @ rotation.T, faces


def scan_points(config: Shapes3DConfig, mesh: Mesh, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The point cloud of a mesh as a scanner might give it: ``config.points`` (xyz, normal) rows, with the
    configured jitter, partial view and clutter (each drawn from ``rng``)."""
    count = config.points
    partial = rng.random() < config.partial_fraction
    clutter = rng.random() < config.clutter_fraction
    draw = count * 2 if partial else count
    xyz, normals = sample_surface(*mesh, draw, rng)
    if partial:                        # keep the half nearest a random viewing direction
        direction = rng.normal(size=3)
        keep = np.argsort(xyz @ direction / np.linalg.norm(direction))[-count:]
        xyz, normals = xyz[keep], normals[keep]
    if clutter:                        # a small foreign primitive beside the shape replaces a tenth of the points
        other = PRIMITIVES[sorted(PRIMITIVES)[rng.integers(len(PRIMITIVES))]]()
        offset = rng.normal(size=3)
        offset = 1.4 * offset / np.linalg.norm(offset)
        n = max(1, count // 10)
        extra, extra_normals = sample_surface(other[0] * 0.3 + offset, other[1], n, rng)
        xyz, normals = np.concatenate([xyz[n:], extra]), np.concatenate([normals[n:], extra_normals])
    if config.noise > 0:
        xyz = xyz + rng.normal(scale=config.noise, size=xyz.shape)
    return xyz, normals
