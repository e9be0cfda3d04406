"""CLIP-guided generation: a differentiable vector rasteriser in torch, CLIPDraw and CLIPasso.

    drawing = cd.draw(bundle, "a red circle above a blue star", strokes=64)   # drawing.paths
    cd.write_svg(drawing, "drawing.svg")
    sketch = cd.sketch(bundle, photo, strokes=16)
"""
from .clipasso import SketchOptions, sketch
from .clipdraw import DrawOptions, clipdraw, draw
from .guidance import Augmentations, ClipGuide
from .raster import Drawing, VectorPath, circle_path, render, render_batch
from .svg import read_svg, svg_text, write_png, write_svg

__all__ = ["Augmentations", "ClipGuide", "DrawOptions", "Drawing", "SketchOptions", "VectorPath", "circle_path",
           "clipdraw", "draw", "read_svg", "render", "render_batch", "sketch", "svg_text", "write_png", "write_svg"]
