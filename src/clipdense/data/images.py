"""Open any image file as RGB, robustly: the one place where pixels enter clipdense.

Every colour mode Pillow decodes becomes the 8-bit RGB a viewer would show: 16- and 32-bit integer and
float greys are scaled by their range (a float TIFF in [0, 1] is not black), transparency is composited
on white, CMYK / YCbCr / HSV / LAB are converted, the EXIF orientation is applied and an animated image
gives its first frame. Anything that cannot be decoded (missing, empty, truncated, not an image, a
decompression bomb) raises ``ImageLoadError`` naming the file, so readers skip, name and count it.
"""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from ..errors import ImageLoadError

# Refuse decompression bombs above this many pixels (PIL warns at 89M by default and errors at 2x).
MAX_IMAGE_PIXELS = 64_000_000


def load_error(name: str, reason: str) -> ImageLoadError:
    """An ImageLoadError that carries the file (``path``) and the ``reason`` apart, for skip lists."""
    error = ImageLoadError(f"{name}: {reason}")
    error.path, error.reason = name, reason  # type: ignore[attr-defined]
    return error


def _to_8bit(values: np.ndarray, full_scale: float | None) -> Image.Image:
    """Grey values scaled to 0..255: by ``full_scale`` (the type's maximum), or by the data's own range."""
    values = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if full_scale is None:
        low, high = float(values.min(initial=0.0)), float(values.max(initial=0.0))
        if low >= 0.0 and high <= 1.0:        # float images in [0, 1], the common convention
            full_scale = 1.0
        elif low >= 0.0 and high <= 255.0:    # already 8-bit values
            full_scale = 255.0
        elif low >= 0.0 and high <= 65535.0:  # 16-bit values stored wider
            full_scale = 65535.0
        else:                                 # anything else: stretch the range it has
            values, full_scale = values - low, max(high - low, 1e-12)
    grey = np.clip(np.round(values * (255.0 / full_scale)), 0, 255).astype(np.uint8)
    return Image.fromarray(grey, "L").convert("RGB")


def _composite(image: Image.Image) -> Image.Image:
    """Transparent pixels over a white background."""
    rgba = image.convert("RGBA")
    background = Image.new("RGB", rgba.size, (255, 255, 255))
    background.paste(rgba, mask=rgba.getchannel("A"))
    return background


def _palette(image: Image.Image) -> Image.Image:
    return _composite(image) if "transparency" in image.info else image.convert("RGB")


def _lab(image: Image.Image) -> Image.Image:
    """CIE L*a*b* through a colour transform (Pillow's plain convert treats the channels as RGB)."""
    transform = ImageCms.buildTransform(ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB")
    return ImageCms.applyTransform(image, transform)


#: how each Pillow mode becomes 8-bit RGB; modes not listed use Pillow's own conversion
CONVERTERS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "RGB": lambda image: image,
    "I;16": lambda image: _to_8bit(np.asarray(image), 65535.0),
    "I;16L": lambda image: _to_8bit(np.asarray(image), 65535.0),
    "I;16B": lambda image: _to_8bit(np.asarray(image), 65535.0),
    "I;16N": lambda image: _to_8bit(np.asarray(image), 65535.0),
    "I": lambda image: _to_8bit(np.asarray(image), None),
    "F": lambda image: _to_8bit(np.asarray(image), None),
    "P": _palette,
    "PA": _composite,
    "RGBA": _composite,
    "RGBa": _composite,
    "LA": _composite,
    "La": lambda image: _composite(image.convert("LA")),
    "LAB": _lab,
}


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB of any Pillow mode (see ``CONVERTERS``)."""
    convert = CONVERTERS.get(image.mode, lambda im: im.convert("RGB"))
    return convert(image)


def open_image(path: str | os.PathLike) -> Image.Image:
    """Decode ``path`` fully into an RGB image with EXIF orientation applied (first frame if animated).

    Raises ImageLoadError (naming the file and the reason) for missing, empty, truncated,
    non-image or oversized files, so readers can skip and count them.
    """
    path = Path(path)
    if path.is_dir():
        raise load_error(str(path), "is a folder, expected an image file")
    if not path.is_file():
        raise load_error(str(path), "no such image file")
    if path.stat().st_size == 0:
        raise load_error(str(path), "empty file (0 bytes)")
    return _decode(path, str(path))


def decode_image(data: bytes, name: str = "<bytes>") -> Image.Image:
    """Like open_image, for bytes already in memory (a WebDataset member); ``name`` is used in errors."""
    if not data:
        raise load_error(name, "empty file (0 bytes)")
    return _decode(io.BytesIO(data), name)


def _decode(source: Path | io.BytesIO, name: str) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as handle:
                width, height = handle.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise load_error(name, f"{width}x{height} pixels exceeds the {MAX_IMAGE_PIXELS} pixel limit "
                                           "(a possible decompression bomb)")
                handle.seek(0)   # an animated image (GIF, APNG, WebP) gives its first frame
                handle.load()
                image = ImageOps.exif_transpose(handle)
                return to_rgb(image)
    except ImageLoadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise load_error(name, f"exceeds the pixel limit, a possible decompression bomb ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise load_error(name, "not a readable image (unknown format)") from exc
    except Exception as exc:  # noqa: BLE001 - a damaged file makes decoders raise almost any type
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise load_error(name, f"corrupt or truncated image ({first})") from exc
