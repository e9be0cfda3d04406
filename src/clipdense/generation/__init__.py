"""CLIP-guided generation: a differentiable vector rasteriser in torch, CLIPDraw, CLIPasso and VQGAN-CLIP.

    drawing = cd.draw(bundle, "a red circle above a blue star", strokes=64)   # drawing.paths
    picture = cd.draw(bundle, "a red circle above a blue star", method="vqgan")   # picture.raster
    cd.write_svg(drawing, "drawing.svg")
    sketch = cd.sketch(bundle, photo, strokes=16)
"""
from .clipasso import SketchOptions, sketch
from .clipdraw import DRAW_METHODS, DrawOptions, clipdraw, draw
from .guidance import Augmentations, ClipGuide
from .raster import Drawing, VectorPath, circle_path, render, render_batch
from .svg import read_svg, svg_text, write_png, write_svg
from .vqgan import VQGANClipOptions, load_vqgan, vqgan_clip

__all__ = ["DRAW_METHODS", "Augmentations", "ClipGuide", "DrawOptions", "Drawing", "SketchOptions", "VectorPath",
           "circle_path", "clipdraw", "draw", "read_svg", "render", "render_batch", "sketch", "svg_text", "write_png",
           "write_svg",
           "VQGANClipOptions", "load_vqgan", "vqgan_clip"]
