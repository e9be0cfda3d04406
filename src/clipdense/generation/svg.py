"""Drawings to and from SVG (what users expect from vector sketches) and to PNG.

The SVG says exactly what ``render`` draws: absolute ``M``/``C``(/``Z``) path data, round caps and joins (the
rasteriser's strokes end in half discs), even-odd fill, colours as ``rgb()`` + opacity, and a background
rectangle; a raster drawing (VQGAN-CLIP's) is one ``<image>`` holding a base64 PNG over that rectangle.
``read_svg`` reads back what ``write_svg`` writes (and SVG of that shape from elsewhere); it is not a
general SVG parser.
"""
from __future__ import annotations

import base64
import io
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import DataError
from .raster import DEFAULT_SAMPLES, Drawing, VectorPath, render

SVG_NS = "http://www.w3.org/2000/svg"
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


def _colour(rgba: torch.Tensor | None) -> tuple[str, str]:
    """('rgb(r,g,b)', 'opacity') of an RGBA tensor in [0, 1]; ('none', '0') for no paint."""
    if rgba is None:
        return "none", "0"
    values = rgba.detach().double().clamp(0, 1).tolist()
    rgb = ",".join(f"{round(v * 255)}" for v in values[:3])
    return f"rgb({rgb})", f"{values[3]:.4f}"


def path_data(path: VectorPath) -> str:
    """SVG path data: M x y, then one C per segment, Z when closed (coordinates with 3 decimals)."""
    segments = path.segments.detach().double().tolist()
    fmt = lambda p: f"{p[0]:.3f} {p[1]:.3f}"   # noqa: E731
    parts = [f"M {fmt(segments[0][0])}"] + [f"C {fmt(s[1])} {fmt(s[2])} {fmt(s[3])}" for s in segments]
    return " ".join(parts) + (" Z" if path.closed else "")


def svg_text(drawing: Drawing) -> str:
    """The drawing as an SVG document string."""
    height, width = drawing.size
    background = ",".join(str(round(float(v) * 255)) for v in drawing.background)
    lines = [f'<svg xmlns="{SVG_NS}" width="{width}" height="{height}" viewBox="0 0 {width} {height}">']
    for key, value in drawing.meta.items():
        lines.append(f'  <desc id="{_escape(key)}">{_escape(value)}</desc>')
    lines.append(f'  <rect x="0" y="0" width="{width}" height="{height}" fill="rgb({background})"/>')
    if drawing.raster is not None:
        lines.append(f'  <image x="0" y="0" width="{width}" height="{height}" image-rendering="pixelated" '
                     f'href="data:image/png;base64,{_png_base64(drawing.raster)}"/>')
    for path in drawing.paths:
        stroke, stroke_opacity = _colour(path.stroke)
        fill, fill_opacity = _colour(path.fill)
        lines.append(f'  <path d="{path_data(path)}" fill="{fill}" fill-opacity="{fill_opacity}" '
                     f'fill-rule="evenodd" stroke="{stroke}" stroke-opacity="{stroke_opacity}" '
                     f'stroke-width="{float(path.width.detach()):.4f}" stroke-linecap="round" '
                     f'stroke-linejoin="round"/>')
    lines.append("</svg>")
    return "\n".join(lines) + "\n"


def _png_base64(picture: torch.Tensor) -> str:
    buffer = io.BytesIO()
    to_image(picture).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _read_png_base64(href: str, size: tuple[int, int], where: str) -> torch.Tensor:
    """The (3, H, W) picture of a ``data:image/png;base64,`` href, which must cover the canvas."""
    prefix = "data:image/png;base64,"
    if not href.startswith(prefix):
        raise DataError(f"{where}: only an embedded PNG ({prefix}...) is read, got {href[:40]!r}")
    try:
        image = Image.open(io.BytesIO(base64.b64decode(href[len(prefix):]))).convert("RGB")
    except (ValueError, OSError) as exc:
        raise DataError(f"{where}: the embedded PNG does not decode ({exc})") from None
    if (image.height, image.width) != size:
        raise DataError(f"{where}: embedded picture of {image.width}x{image.height}, the canvas is "
                        f"{size[1]}x{size[0]}")
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float() / 255


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def write_svg(drawing: Drawing, path: str | os.PathLike) -> Path:
    """Write the drawing as SVG (atomically: a temporary file renamed into place)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(svg_text(drawing), encoding="utf-8")
    os.replace(tmp, out)
    return out


def _parse_colour(text: str | None, opacity: str | None, where: str) -> torch.Tensor | None:
    if text is None or text == "none":
        return None
    match = re.fullmatch(r"\s*rgb\(\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*\)\s*", text)
    if not match:
        raise DataError(f"{where}: colour {text!r}: expected rgb(r,g,b) or none")
    return torch.tensor([int(v) / 255 for v in match.groups()] + [float(opacity or 1.0)])


def _parse_path_data(text: str, where: str) -> tuple[torch.Tensor, bool]:
    """Control points (P, 2) and closedness of absolute ``M x y C ... [Z]`` path data."""
    tokens = re.findall(rf"[MCZmcz]|{_NUMBER}", text)
    if not tokens or tokens[0] != "M":
        raise DataError(f"{where}: path data must start with an absolute 'M x y', got {text[:40]!r}")
    numbers: list[float] = []
    closed = False
    for token in tokens[1:]:
        if token in "Zz":
            closed = True
        elif token in "mcz" or (token == "M"):
            raise DataError(f"{where}: only absolute M/C/Z path commands are read, got {token!r}")
        elif token != "C":
            numbers.append(float(token))
    if len(numbers) % 2 or (len(numbers) // 2) % 3 != 1:
        raise DataError(f"{where}: path data is not M x y followed by whole cubic segments")
    points = torch.tensor(numbers).reshape(-1, 2)
    if closed:
        points = points[:-1]   # the last segment ends at the first point, which the path does not repeat
    return points, closed


def read_svg(path: str | os.PathLike) -> Drawing:
    """The Drawing in an SVG written by ``write_svg`` (absolute cubic paths, rgb() colours)."""
    file = Path(path)
    try:
        root = ET.parse(file).getroot()
    except ET.ParseError as exc:
        raise DataError(f"{file}: not a readable SVG ({exc})") from None
    if root.tag != f"{{{SVG_NS}}}svg":
        raise DataError(f"{file}: the root element is {root.tag!r}, expected an SVG <svg>")
    size = (int(float(root.get("height", 0))), int(float(root.get("width", 0))))
    background, paths, meta, raster = (1.0, 1.0, 1.0), [], {}, None
    for element in root:
        tag = element.tag.removeprefix(f"{{{SVG_NS}}}")
        if tag == "desc" and element.get("id"):
            meta[element.get("id")] = element.text or ""
        elif tag == "rect":
            colour = _parse_colour(element.get("fill"), "1", f"{file} <rect>")
            background = tuple(float(v) for v in colour[:3]) if colour is not None else background
        elif tag == "image":
            raster = _read_png_base64(element.get("href") or element.get("{http://www.w3.org/1999/xlink}href", ""),
                                      size, f"{file} <image>")
        elif tag == "path":
            where = f"{file} <path> {len(paths)}"
            points, closed = _parse_path_data(element.get("d", ""), where)
            stroke = _parse_colour(element.get("stroke"), element.get("stroke-opacity"), where)
            fill = _parse_colour(element.get("fill"), element.get("fill-opacity"), where)
            width = torch.tensor(float(element.get("stroke-width", 1.0)))
            paths.append(VectorPath(points, width, stroke if stroke is not None else torch.zeros(4), closed,
                                    fill if closed else None))
    return Drawing(paths, size, background, meta, raster)


def to_image(picture: torch.Tensor) -> Image.Image:
    """A (3, H, W) tensor in [0, 1] as an 8-bit RGB PIL image."""
    array = (picture.detach().clamp(0, 1).permute(1, 2, 0).cpu().double().numpy() * 255).round()
    return Image.fromarray(array.astype(np.uint8), "RGB")


def write_png(drawing: Drawing, path: str | os.PathLike, samples: int = DEFAULT_SAMPLES, scale: int = 1) -> Path:
    """Render the drawing (``scale`` times larger: vectors stay sharp) and save it as PNG."""
    from ..config import atomic_save_picture

    with torch.no_grad():
        return atomic_save_picture(to_image(render(scaled(drawing, scale) if scale != 1 else drawing, samples)),
                                   path)


def scaled(drawing: Drawing, factor: float) -> Drawing:
    """The drawing on a canvas ``factor`` times larger (points and widths scaled)."""
    paths = [VectorPath(p.points.detach() * factor, p.width.detach() * factor, p.stroke.detach(), p.closed,
                        None if p.fill is None else p.fill.detach()) for p in drawing.paths]
    size = (round(drawing.size[0] * factor), round(drawing.size[1] * factor))
    raster = None if drawing.raster is None else torch.nn.functional.interpolate(
        drawing.raster.detach()[None], size=size, mode="nearest")[0]
    return Drawing(paths, size, drawing.background, dict(drawing.meta), raster)
