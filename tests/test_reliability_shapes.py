"""Issue 32: shapes at the edges. A detector given a 1 x 4000 strip (or a 1 x 1 pixel) answers instead of ending in a
traceback inside torchvision's resize: the strip is padded (bottom / right) so that the test-time resize keeps one
stride of the coarsest level, and the boxes are clipped back to the strip."""
from __future__ import annotations

import pytest
import torch

from test_detection_heads import SMALL, vit_clip

from clipdense.heads.detection import DetectorConfig, FViTDetector


@pytest.fixture(scope="module")
def detector() -> FViTDetector:
    torch.manual_seed(0)
    found = FViTDetector(vit_clip(2, 8, 32), DetectorConfig(image_size=64, score_threshold=0.0, **SMALL), ["a", "b"])
    return found.eval()


@pytest.mark.parametrize("height,width", [(1, 4000), (4000, 1), (1, 1), (3, 700), (64, 64)])
def test_extreme_aspect_ratios_detect_and_boxes_stay_inside(detector: FViTDetector, height: int, width: int) -> None:
    image = torch.rand(3, height, width)
    padded, sizes = detector._padded([image])          # noqa: SLF001 - the rule itself, by hand
    h, w = sizes[0]
    assert (h, w)[:2] == tuple(padded[0].shape[-2:]) and h >= height and w >= width
    scale = 64 / max(h, w)
    assert min(h, w) * scale >= detector.config.strides[-1] - 1e-6 or (h, w) == (height, width)
    assert torch.equal(padded[0][:, :height, :width], image)   # the picture itself is untouched
    result = detector.detect([image], ["a", "b"])[0]
    boxes = result["boxes"]
    assert boxes.shape[1:] == (4,) and torch.isfinite(boxes).all()
    assert (boxes[:, 0::2] >= 0).all() and (boxes[:, 0::2] <= width).all()
    assert (boxes[:, 1::2] >= 0).all() and (boxes[:, 1::2] <= height).all()
    proposals = detector.propose([image])[0]
    assert (proposals[:, 2] <= width).all() and (proposals[:, 3] <= height).all()


def test_an_ordinary_image_is_not_padded(detector: FViTDetector) -> None:
    image = torch.rand(3, 40, 48)
    padded, sizes = detector._padded([image])          # noqa: SLF001
    assert padded[0] is image and sizes == [(40, 48)]
