"""Geometry and drawing of the synthetic world's things: plain shapes and multi-part composites.

A thing is a list of coloured polygons in unit coordinates ([-1, 1], y down). Drawing them with
PIL on a full-size canvas is fast (no per-pixel Python) and gives exact masks for annotations.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw

# Object colours (RGB). Names are the words used in class names ("red circle").
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "orange": (245, 135, 20),
    "yellow": (240, 215, 35),
    "green": (40, 165, 55),
    "blue": (35, 75, 220),
    "purple": (135, 50, 180),
    "white": (245, 245, 245),
    "black": (22, 22, 22),
    "pink": (245, 130, 185),
    "brown": (125, 75, 35),
    "cyan": (40, 200, 210),
    "grey": (128, 128, 128),
}
DEFAULT_COLOURS: tuple[str, ...] = ("red", "orange", "yellow", "green", "blue", "purple", "white", "black")

Part = tuple[np.ndarray, str]  # (polygon (N, 2) in unit coordinates, colour role or colour name)


def _regular(n: int, radius: float = 1.0, phase: float = -np.pi / 2) -> np.ndarray:
    angles = phase + np.arange(n) * 2 * np.pi / n
    return np.stack([np.cos(angles), np.sin(angles)], axis=1) * radius


def _circle(radius: float = 1.0, cx: float = 0.0, cy: float = 0.0, n: int = 40) -> np.ndarray:
    return _regular(n, radius) + np.array([cx, cy])


def _rect(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=float)


def _star() -> np.ndarray:
    outer, inner = _regular(5, 1.0), _regular(5, 0.45, phase=-np.pi / 2 + np.pi / 5)
    return np.stack([outer, inner], axis=1).reshape(-1, 2)


def _cross() -> np.ndarray:
    a, b = 0.32, 0.95
    return np.array([[-a, -b], [a, -b], [a, -a], [b, -a], [b, a], [a, a], [a, b], [-a, b],
                     [-a, a], [-b, a], [-b, -a], [-a, -a]])


def _heart() -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = 13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t)
    return np.stack([x, -y - 2.5], axis=1) / 16.5


SHAPES: dict[str, Callable[[], list[Part]]] = {
    "circle": lambda: [(_circle(), "main")],
    "square": lambda: [(_rect(-0.82, -0.82, 0.82, 0.82), "main")],
    "triangle": lambda: [(_regular(3, 1.0) + np.array([0, 0.2]), "main")],
    "star": lambda: [(_star(), "main")],
    "hexagon": lambda: [(_regular(6, 1.0, phase=0.0), "main")],
    "cross": lambda: [(_cross(), "main")],
    "diamond": lambda: [(np.array([[0, -1], [0.62, 0], [0, 1], [-0.62, 0]], dtype=float), "main")],
    "heart": lambda: [(_heart(), "main")],
    "pentagon": lambda: [(_regular(5, 1.0), "main")],
    "ring": lambda: [(_circle(), "main"), (_circle(0.55), "hole")],
}
DEFAULT_SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "hexagon", "cross", "diamond", "heart")


def _house() -> list[Part]:
    return [(_rect(-0.7, -0.05, 0.7, 0.9), "main"),
            (np.array([[-0.92, -0.02], [0.92, -0.02], [0.0, -0.95]]), "second"),
            (_rect(-0.18, 0.4, 0.18, 0.9), "black")]


def _snowman() -> list[Part]:
    return [(_circle(0.42, 0, 0.55), "white"), (_circle(0.31, 0, -0.1), "white"),
            (_circle(0.22, 0, -0.58), "white"), (_circle(0.05, -0.08, -0.63, 12), "black"),
            (_circle(0.05, 0.08, -0.63, 12), "black"), (_rect(-0.03, -0.56, 0.14, -0.5), "orange")]


def _bullseye() -> list[Part]:
    return [(_circle(r), role) for r, role in ((1.0, "red"), (0.75, "white"), (0.5, "red"), (0.25, "white"))]


def _checkerboard() -> list[Part]:
    parts: list[Part] = []
    edges = np.linspace(-0.82, 0.82, 5)
    for i in range(4):
        for j in range(4):
            parts.append((_rect(edges[i], edges[j], edges[i + 1], edges[j + 1]), "black" if (i + j) % 2 else "white"))
    return parts


# Things whose identity needs several patches: parts (house, snowman) or two-colour patterns.
COMPOSITES: dict[str, Callable[[], list[Part]]] = {
    "house": _house,
    "snowman": _snowman,
    "bullseye": _bullseye,
    "checkerboard": _checkerboard,
}
# Largest rotation (degrees) that keeps a thing recognisable; None means any angle.
MAX_ROTATION: dict[str, float] = {"heart": 40.0, "house": 20.0, "snowman": 15.0}


@dataclass
class Thing:
    """One placed object: its class, geometry and colours (before occlusion)."""

    class_name: str
    shape: str
    colour: str | None
    centre: tuple[float, float]
    radius: float
    angle: float
    main_rgb: tuple[int, int, int]
    second_rgb: tuple[int, int, int]


def _resolve(role: str, thing: Thing, background: tuple[int, int, int]) -> tuple[int, int, int] | None:
    if role == "main":
        return thing.main_rgb
    if role == "second":
        return thing.second_rgb
    if role == "hole":
        return None
    return COLOURS[role]


def thing_parts(thing: Thing) -> list[Part]:
    """Unit-coordinate parts of a thing's shape (plain shape or composite)."""
    factory = SHAPES.get(thing.shape) or COMPOSITES[thing.shape]
    return factory()


def draw_thing(thing: Thing, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Rasterise a thing on a ``size`` x ``size`` canvas -> (rgb uint8 (H,W,3), mask bool (H,W))."""
    rgb = Image.new("RGB", (size, size))
    mask = Image.new("L", (size, size))
    draw_rgb, draw_mask = ImageDraw.Draw(rgb), ImageDraw.Draw(mask)
    theta = np.deg2rad(thing.angle)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    centre = np.asarray(thing.centre)
    for polygon, role in thing_parts(thing):
        points = polygon @ rot.T * thing.radius + centre
        flat = [tuple(p) for p in points.tolist()]
        colour = _resolve(role, thing, (0, 0, 0))
        if colour is None:
            draw_mask.polygon(flat, fill=0)
            continue
        draw_rgb.polygon(flat, fill=colour)
        draw_mask.polygon(flat, fill=255)
    return np.asarray(rgb), np.asarray(mask) > 0
