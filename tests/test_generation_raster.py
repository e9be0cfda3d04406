"""The torch vector rasteriser against hand-computed coverage, torch.autograd.gradcheck, and its own SVG."""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
from PIL import Image

from clipdense.errors import ConfigError
from clipdense.generation import Drawing, VectorPath, circle_path, read_svg, render, svg_text, write_png, write_svg

BLACK = (0.0, 0.0, 0.0, 1.0)


def _segment(x0: float, x1: float, y: float, width: float, rgba=BLACK, dtype=torch.float64) -> VectorPath:
    """A straight horizontal stroke written as one cubic with collinear control points."""
    xs = torch.linspace(x0, x1, 4, dtype=dtype)
    points = torch.stack([xs, torch.full_like(xs, y)], dim=1)
    return VectorPath(points, torch.tensor(width, dtype=dtype), torch.tensor(rgba, dtype=dtype))


def _coverage(drawing: Drawing) -> torch.Tensor:
    """Black-on-white coverage: 1 - the picture's red channel."""
    return 1.0 - render(drawing)[0]


def test_straight_segment_coverage_by_hand():
    # a width-3 stroke on y = 8: rows centred at 7.5 and 8.5 are 0.5 px away -> full; rows 6.5 and 9.5 are 1.5 px
    # away, i.e. on the edge (1.5 = w/2) -> half covered; every other row empty. Each inner column sums to w = 3.
    cover = _coverage(Drawing([_segment(4.0, 20.0, 8.0, 3.0)], (16, 24)))
    inner = cover[:, 6:18]
    expected = torch.zeros(16, dtype=cover.dtype)
    expected[[7, 8]], expected[[6, 9]] = 1.0, 0.5
    assert torch.allclose(inner, expected[:, None].expand_as(inner), atol=1e-9)
    # total: 16 px long x 3 wide + the two round caps (one disc of radius 1.5), to within the pixel grid
    assert float(cover.sum()) == pytest.approx(16 * 3 + math.pi * 1.5 ** 2, rel=0.02)


def test_circle_stroke_and_fill_areas():
    radius = 10.0
    ring = Drawing([circle_path((16.0, 16.0), radius, 2.0, BLACK, dtype=torch.float64)], (32, 32))
    # an annulus from r - 1 to r + 1: area pi((r+1)^2 - (r-1)^2) = 4 pi r
    assert float(_coverage(ring).sum()) == pytest.approx(4 * math.pi * radius, rel=0.01)
    disc = Drawing([circle_path((16.0, 16.0), radius, 0.0, (0, 0, 0, 0), fill=BLACK, dtype=torch.float64)], (32, 32))
    cover = _coverage(disc)
    assert float(cover.sum()) == pytest.approx(math.pi * radius ** 2, rel=0.01)
    assert float(cover[16, 16]) == 1.0 and float(cover[0, 0]) == 0.0
    # an edge pixel: (15, 25) has its centre at (25.5, 15.5), 9.513 px from the centre, 0.487 px inside the circle
    # -> ramp 0.987; the 16-point polyline's chords sit up to r (1 - cos(pi / 60)) = 0.014 px inside the arc
    inside = 10.0 - math.hypot(25.5 - 16.0, 15.5 - 16.0)
    assert float(cover[15, 25]) == pytest.approx(inside + 0.5, abs=0.02)


def test_alpha_compositing_over_background():
    half_red = _segment(2.0, 14.0, 8.0, 4.0, (1.0, 0.0, 0.0, 0.5))
    picture = render(Drawing([half_red], (16, 16), background=(1.0, 1.0, 1.0)))
    assert torch.allclose(picture[:, 8, 8], torch.tensor([1.0, 0.5, 0.5], dtype=picture.dtype))
    blue = _segment(2.0, 14.0, 8.0, 4.0, (0.0, 0.0, 1.0, 1.0))
    # later paths are painted over earlier ones: blue on top of red hides it
    picture = render(Drawing([half_red, blue], (16, 16)))
    assert torch.allclose(picture[:, 8, 8], torch.tensor([0.0, 0.0, 1.0], dtype=picture.dtype))


def test_gradcheck_points_width_colour():
    torch.manual_seed(0)
    points = (torch.tensor([[1.3, 2.2], [3.1, 5.4], [5.2, 0.9], [6.6, 4.3]], dtype=torch.float64)
              .requires_grad_(True))
    width = torch.tensor(1.7, dtype=torch.float64, requires_grad=True)
    colour = torch.tensor([0.2, 0.6, 0.9, 0.8], dtype=torch.float64, requires_grad=True)

    def picture(p, w, c):
        return render(Drawing([VectorPath(p, w, c)], (7, 8)), samples=6)

    assert torch.autograd.gradcheck(picture, (points, width, colour), eps=1e-6, atol=1e-5)
    # every tensor really gets a gradient (a ramp pixel exists)
    picture(points, width, colour).sum().backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in (points, width, colour))


def test_gradcheck_closed_fill():
    points = (torch.tensor([[1.2, 1.1], [6.3, 0.7], [7.1, 6.2], [1.4, 6.6], [0.8, 4.1], [2.2, 2.9]],
                           dtype=torch.float64).requires_grad_(True))
    fill = torch.tensor([0.9, 0.1, 0.3, 0.7], dtype=torch.float64, requires_grad=True)

    def picture(p, f):
        path = VectorPath(p, torch.tensor(1.0, dtype=torch.float64), torch.tensor(BLACK, dtype=torch.float64),
                          closed=True, fill=f)
        return render(Drawing([path], (8, 8)), samples=5)

    assert torch.autograd.gradcheck(picture, (points, fill), eps=1e-6, atol=1e-5)


def test_bad_paths_refused():
    with pytest.raises(ConfigError, match="3n \\+ 1"):
        VectorPath(torch.zeros(5, 2), torch.tensor(1.0), torch.zeros(4))
    with pytest.raises(ConfigError, match="only a closed path"):
        VectorPath(torch.zeros(4, 2), torch.tensor(1.0), torch.zeros(4), fill=torch.zeros(4))


def test_svg_parses_and_rerenders_to_the_same_png(tmp_path):
    torch.manual_seed(3)
    paths = [VectorPath(torch.rand(7, 2) * 40, torch.rand(()) * 3 + 0.5, torch.rand(4)) for _ in range(5)]
    paths.append(circle_path((20.0, 20.0), 8.0, 1.5, (0.1, 0.2, 0.3, 1.0), fill=(0.8, 0.7, 0.1, 0.6)))
    drawing = Drawing(paths, (40, 48), background=(1.0, 0.98, 0.9), meta={"prompt": "a red <circle> & star"})
    svg = write_svg(drawing, tmp_path / "d.svg")
    root = ET.parse(svg).getroot()          # the standard library's XML parser reads it as SVG
    assert root.tag == "{http://www.w3.org/2000/svg}svg" and root.get("viewBox") == "0 0 48 40"
    assert len(root.findall("{http://www.w3.org/2000/svg}path")) == 6
    back = read_svg(svg)
    assert back.meta == drawing.meta and back.size == drawing.size and len(back.paths) == 6
    assert back.paths[-1].closed and back.paths[-1].fill is not None and not back.paths[0].closed
    write_png(drawing, tmp_path / "a.png")
    write_png(back, tmp_path / "b.png")
    a = np.asarray(Image.open(tmp_path / "a.png"), dtype=np.int16)
    b = np.asarray(Image.open(tmp_path / "b.png"), dtype=np.int16)
    assert a.shape == (40, 48, 3) and np.abs(a - b).max() <= 3   # 3-decimal coordinates, 8-bit colours
    assert svg_text(back) == svg_text(read_svg(tmp_path / "d.svg"))
