"""DepthCLIP (Zhang et al., 2022, "Can Language Understand Depth?"): monocular depth without training.

Each patch's dense feature (any dense mode) is compared with the prompts "This object is {word}" for the seven
distance words; a softmax over the words at temperature ``temperature`` weights their depth bins, and the depth
is ``sum_k p_k bin_k``; the patch map is resized to the image (bilinear).

    metres = cd.depth(bundle, "photo.png")        # (H, W) float32 metres
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import ConfigError
from ..models.dense import encode_dense
from ..models.text import text_classifier
from .images import ImageLike, as_pil, dense_input, one_image

#: the paper's distance words, nearest first, and the depth (metres) each stands for
DEPTH_WORDS: tuple[str, ...] = ("giant", "extremely close", "close", "not in distance", "a little remote", "far",
                                "unseen")
DEPTH_BINS: tuple[float, ...] = (1.00, 1.50, 2.00, 2.25, 2.50, 2.75, 3.00)


@dataclass(frozen=True)
class DepthClipConfig:
    """DepthCLIP's settings (the paper's by default).

    Args:
        words: distance words, one per bin.
        bins: depth in metres of each word (same length as ``words``).
        template: the prompt, '{}' the word.
        temperature: softmax temperature over the words' cosine similarities.
        mode: dense mode of the features.
        short_side: the image's short side when encoded (None: the model's input size).
    """

    words: tuple[str, ...] = DEPTH_WORDS
    bins: tuple[float, ...] = DEPTH_BINS
    template: str = "This object is {}"
    temperature: float = 0.1
    mode: str = "maskclip"
    short_side: int | None = None

    def validate(self) -> None:
        if len(self.words) != len(self.bins) or not self.words:
            raise ConfigError(f"depth: {len(self.words)} words for {len(self.bins)} bins; expected one bin per word")
        if self.temperature <= 0 or min(self.bins) <= 0:
            raise ConfigError("depth: temperature and bins must be > 0")


def depth_from_features(dense: torch.Tensor, text: torch.Tensor, bins: Sequence[float] | torch.Tensor,
                        temperature: float) -> torch.Tensor:
    """(B, h, w) depth = sum_k softmax_k(cos(dense, text_k) / temperature) * bin_k for unit-norm ``dense``
    (B, D, h, w) and ``text`` (K, D)."""
    logits = torch.einsum("bdhw,kd->bkhw", dense.float(), text.float()) / temperature
    weights = torch.as_tensor(bins, dtype=logits.dtype, device=logits.device)
    return torch.einsum("bkhw,k->bhw", logits.softmax(1), weights)


def depth_text(bundle: Any, config: DepthClipConfig) -> torch.Tensor:
    """(K, D) unit-norm embeddings of the distance prompts."""
    return text_classifier(bundle, list(config.words), config.template)


@torch.no_grad()
def depth(bundle: Any, image: ImageLike, config: DepthClipConfig = DepthClipConfig()) -> torch.Tensor:
    """(H, W) metric depth (metres) of one image (a path, PIL image or one-image tensor) at its own size."""
    config.validate()
    image = one_image(image, "depth")
    pixels = dense_input(bundle.model, image, config.short_side or min(bundle.image_size))
    device = next(bundle.model.parameters()).device
    dense = encode_dense(bundle.model, pixels.to(device), config.mode)
    metres = depth_from_features(dense, depth_text(bundle, config).to(device), config.bins, config.temperature)
    height, width = _original_size(image, pixels)
    return F.interpolate(metres[:, None], size=(height, width), mode="bilinear", align_corners=False)[0, 0].cpu()


def _original_size(image: ImageLike, pixels: torch.Tensor) -> tuple[int, int]:
    if isinstance(image, torch.Tensor):
        return int(pixels.shape[-2]), int(pixels.shape[-1])
    pil = as_pil(image)
    return pil.height, pil.width


#: the depth pictures' colours from near (bright yellow) to far (dark purple): (position in [0, 1], RGB)
DEPTH_RAMP: tuple[tuple[float, tuple[int, int, int]], ...] = (
    (0.0, (253, 231, 37)), (0.25, (94, 201, 98)), (0.5, (33, 145, 140)), (0.75, (59, 82, 139)), (1.0, (68, 1, 84)))


def depth_picture(metres: np.ndarray | torch.Tensor, near: float, far: float) -> Image.Image:
    """(H, W) metres -> RGB along ``DEPTH_RAMP`` from ``near`` to ``far`` (clamped; black where unknown, 0), so
    pictures drawn with the same ends compare by colour."""
    values = metres.numpy() if isinstance(metres, torch.Tensor) else np.asarray(metres)
    t = np.clip((values - near) / max(far - near, 1e-9), 0.0, 1.0)
    stops = np.array([s for s, _ in DEPTH_RAMP])
    rgb = np.stack([np.interp(t, stops, [c[i] for _, c in DEPTH_RAMP]) for i in range(3)], -1)
    rgb[values <= 0] = 0
    return Image.fromarray(rgb.round().astype(np.uint8))
