"""CLIP-guided generation: a differentiable vector rasteriser in torch, CLIPDraw and CLIPasso."""
from .raster import Drawing, VectorPath, circle_path, render, render_batch
from .svg import read_svg, svg_text, write_png, write_svg

__all__ = ["Drawing", "VectorPath", "circle_path", "render", "render_batch", "read_svg", "svg_text", "write_png",
           "write_svg"]
