"""What one analysis of the page holds, apart from how it was made (``analysis``) or drawn (``render``).

Its own module so that ``heads`` (which changes an analysis) and ``analysis`` (which runs a head) both import it
and neither imports the other's importer: the page's modules import in one direction, ``results`` < ``heads`` <
``analysis`` < ``render`` < ``app``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image


@dataclass(frozen=True)
class Analysis:
    """Everything one request produced; thresholds are applied later, when drawing.

    Args:
        image: the photo as analysed (bounded to the page's largest side).
        probabilities: (C, H, W) class probabilities per pixel (None when a detector replaces segmentation).
        detections: the detector's ``tasks.detect.Detections`` (None without a detection head).
        ranking: whole-image class probabilities.
        heatmap: (H, W) cosine similarity of the dense features to ``heatmap_prompt``.
        depth: (H, W) DepthCLIP's training-free depth in metres (None for a model that segments by itself).
        seconds: where the time went (``text``: the text classifier, cached or not).
    """

    image: Image.Image
    classes: list[str]
    probabilities: torch.Tensor | None
    ranking: dict[str, float]
    heatmap: torch.Tensor
    heatmap_prompt: str
    model: str
    detections: Any = None
    head: str | None = None
    notes: tuple[str, ...] = ()
    depth: torch.Tensor | None = None
    seconds: dict[str, float] = field(default_factory=dict)
