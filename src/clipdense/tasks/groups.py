"""The picture of a model's own segments per stage (the GroupViT paper's figure: which patches each group took)."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..errors import ConfigError
from ..models.segmenters import segmenter_of
from .images import ImageLike, as_pil, dense_input
from .overlay import palette

#: panels are drawn at least this many pixels on their short side (a 64 px input is too small to look at)
MIN_PANEL_SIDE = 256
LABEL_ROW = 16


def _boundaries(groups: np.ndarray) -> np.ndarray:
    """Pixels whose right or lower neighbour belongs to another group."""
    edge = np.zeros(groups.shape, dtype=bool)
    edge[:, :-1] |= groups[:, 1:] != groups[:, :-1]
    edge[:-1, :] |= groups[1:, :] != groups[:-1, :]
    return edge


def stage_panel(image: Image.Image, groups: np.ndarray, alpha: float = 0.6) -> Image.Image:
    """``image`` blended with one colour per group of an (H, W) group map at the image's size, borders in black."""
    colours = palette(int(groups.max()) + 1)[groups]
    blended = np.asarray(image.convert("RGB"), dtype=np.float32) * (1 - alpha) + colours * alpha
    blended[_boundaries(groups)] = 0
    return Image.fromarray(blended.round().astype(np.uint8))


@torch.no_grad()
def groups_picture(bundle, image: ImageLike, short_side: int | None = None) -> Image.Image:
    """The image beside one panel per stage of the model's own segmentation, each group in its own colour.

    Args:
        bundle: a loaded model with a registered segmenter (GroupViT).
        image: path, PIL image.
        short_side: the input's short side (default: the model's input size), as ``segment`` reads it.
    """
    segmenter = segmenter_of(bundle.model)
    if segmenter is None:
        raise ConfigError(f"{bundle.name}: the groups picture needs a model that makes its own segments "
                          "(GroupViT); a CLIP is read by dense modes instead")
    pil = as_pil(image)
    tensor = dense_input(bundle.model, pil, short_side or min(bundle.image_size)).to(bundle.device)
    stages = [m[0].cpu().numpy() for m in segmenter.segments(tensor)]
    height, width = tensor.shape[-2:]
    scale = max(1, -(-MIN_PANEL_SIDE // min(height, width)))
    size = (width * scale, height * scale)
    shown = pil.resize(size, Image.BICUBIC)
    panels = [("image", shown)]
    for index, groups in enumerate(stages, start=1):
        big = np.asarray(Image.fromarray(groups.astype(np.int32)).resize(size, Image.NEAREST))
        panels.append((f"stage {index}: {len(np.unique(groups))} groups", stage_panel(shown, big)))
    canvas = Image.new("RGB", (size[0] * len(panels) + 4 * (len(panels) - 1), size[1] + LABEL_ROW), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (label, panel) in enumerate(panels):
        left = i * (size[0] + 4)
        canvas.paste(panel, (left, LABEL_ROW))
        draw.text((left + 2, 2), label, fill="black")
    return canvas
