"""Backgrounds ("stuff") of the synthetic world: photographic textures and procedural surfaces.

The photographic ones come from scikit-image's bundled sample images (brick, grass, gravel), which
ship inside the wheel, so no download is ever needed.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Callable

import numpy as np
from PIL import Image

from ...errors import DataError

# Caption nouns / phrases for each stuff class (used by captions.py).
STUFF_TINTS: dict[str, tuple[float, float, float]] = {
    "brick": (1.15, 0.62, 0.48),
    "grass": (0.62, 1.05, 0.45),
    "gravel": (0.95, 0.92, 0.88),
}


@lru_cache(maxsize=None)
def _photo(name: str) -> np.ndarray:
    """A bundled scikit-image texture as float32 grey in [0, 1] (loaded once per process)."""
    try:
        import skimage.data
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DataError("the synthetic world needs scikit-image (pip install 'clipdense[synth]')") from exc
    image = getattr(skimage.data, name)()
    return image.astype(np.float32) / 255.0


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [0, 1]: random grid upsampled bicubically."""
    grid = rng.random((cells, cells), dtype=np.float32)
    up = Image.fromarray(grid, mode="F").resize((size, size), Image.BICUBIC)
    return np.clip(np.asarray(up), 0.0, 1.0)


def _photographic(name: str) -> Callable[[np.random.Generator, int], np.ndarray]:
    def make(rng: np.random.Generator, size: int) -> np.ndarray:
        texture = _photo(name)
        side = int(rng.integers(min(160, texture.shape[0]), texture.shape[0] + 1))
        y0 = int(rng.integers(0, texture.shape[0] - side + 1))
        x0 = int(rng.integers(0, texture.shape[1] - side + 1))
        crop = Image.fromarray(texture[y0:y0 + side, x0:x0 + side], mode="F").resize((size, size), Image.BILINEAR)
        grey = np.asarray(crop)[..., None]
        tint = np.asarray(STUFF_TINTS[name], dtype=np.float32) * rng.uniform(0.85, 1.15)
        return np.clip(grey * tint * 255.0 * 1.1, 0, 255)
    return make


def _sky(rng: np.random.Generator, size: int) -> np.ndarray:
    t = np.linspace(0.0, 1.0, size, dtype=np.float32)[:, None, None]
    top = np.array([70, 135, 225], np.float32) * rng.uniform(0.9, 1.1)
    bottom = np.array([165, 205, 245], np.float32)
    base = top * (1 - t) + bottom * t + np.zeros((1, size, 1), np.float32)
    clouds = np.clip((_smooth_noise(rng, size, 5) - 0.55) * 3.0, 0, 1)[..., None]
    return base * (1 - clouds) + 250.0 * clouds


def _water(rng: np.random.Generator, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    wavelength = rng.uniform(0.06, 0.14)
    waves = np.sin(2 * np.pi * (yy / wavelength + 0.4 * np.sin(2 * np.pi * xx * rng.uniform(0.8, 2.0))))
    shade = 0.75 + 0.25 * _smooth_noise(rng, size, 4)
    base = np.array([25, 85, 155], np.float32)
    return base * shade[..., None] + (18.0 * waves + 10.0)[..., None] * np.array([0.6, 0.9, 1.0], np.float32)


def _sand(rng: np.random.Generator, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    ripples = np.sin(2 * np.pi * (yy * rng.uniform(6, 12) + 0.3 * _smooth_noise(rng, size, 3)))
    grain = rng.normal(0.0, 9.0, (size, size)).astype(np.float32)
    base = np.array([222, 192, 138], np.float32) * rng.uniform(0.92, 1.05)
    return base + (8.0 * ripples + grain)[..., None]


def _snow(rng: np.random.Generator, size: int) -> np.ndarray:
    drift = _smooth_noise(rng, size, 6)[..., None]
    grain = rng.normal(0.0, 3.0, (size, size, 1)).astype(np.float32)
    return np.array([228, 234, 246], np.float32) - 30.0 * drift * np.array([1.0, 0.8, 0.4], np.float32) + grain


STUFF: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "sky": _sky,
    "water": _water,
    "sand": _sand,
    "snow": _snow,
    "grass": _photographic("grass"),
    "brick": _photographic("brick"),
    "gravel": _photographic("gravel"),
}
DEFAULT_STUFF: tuple[str, ...] = ("sky", "water", "sand", "snow", "grass", "brick", "gravel")


def render_stuff(name: str, rng: np.random.Generator, size: int) -> np.ndarray:
    """A ``size`` x ``size`` float32 RGB background (0..255, not yet clipped) of stuff ``name``."""
    if name not in STUFF:
        raise DataError(f"unknown stuff class {name!r}; expected one of {sorted(STUFF)}")
    return np.asarray(STUFF[name](rng, size), dtype=np.float32)
