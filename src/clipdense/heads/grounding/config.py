"""The architecture of a GLIP head, as data (saved as JSON in the head file).

Defaults follow GLIP-T where a frozen CLIP allows: F-ViT's pyramid from four block taps (strides 8/16/32 and a
max-pool level), 6 fusion layers of bidirectional cross-attention with layer-scale 1e-4, FCOS-style one-stage
heads (one location = one region; centre sampling radius 1.5, GIoU box loss, centerness), region-token logits with a
learnt scale and a bias started at the focal prior 0.01, token-level sigmoid focal loss (alpha 0.25, gamma 2).
Backbone-dependent fields (taps, widths, text context, normalisation) are filled by ``resolve_glip_config``.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from ...errors import ConfigError
from ...models.towers import TowerFacts
from ..detection.config import default_taps, power_of_two


@dataclass
class GLIPConfig:
    """Everything that rebuilds a GLIP head.

    Args:
        taps: block indices whose token maps feed the pyramid ([] = F-ViT's rule); one per stride.
        strides: pyramid strides (powers of two); a max-pool level at twice the last is added.
        channels: pyramid / image tower channels.
        image_size: input side (longest side resized to it; 0 = twice the tower's input size).
        layers: image / text tower layers after the pyramid (GLIP: 6).
        fusion: whether each layer fuses image and text (False: the no-fusion ablation).
        fusion_dim / fusion_heads: the cross-attention's width and heads.
        layer_scale: initial layer-scale of each fusion update (GLIP: 1e-4).
        text_dim: width the token features are projected to (0 = ``channels``).
        logit_scale: initial scale of the region-token cosine (learnt).
        prior: focal prior probability (sets the initial logit bias).
        focal_alpha / focal_gamma: sigmoid focal loss (0.25, 2).
        center_radius: FCOS centre sampling radius, in strides.
        score_threshold / nms / detections / candidates: inference.
        novel: class names held out of its (detection) training, for the OV protocol's novel / base split.
        answers: GLIPv2's VQA head: the answer vocabulary (empty: no VQA part; ``vqa.py``).
        vqa_hidden: the VQA MLP's hidden width (0 = twice ``channels``).
        mask_head: GLIPv2's instance masks: a class-agnostic Mask R-CNN branch on the fused levels (``masks.py``),
            trained where the data has instance masks.
        mask_samples: foreground regions per image the mask loss scores (random when there are more).
    """

    taps: list[int] = field(default_factory=list)
    strides: list[int] = field(default_factory=lambda: [8, 16, 32])
    channels: int = 256
    image_size: int = 0
    layers: int = 6
    fusion: bool = True
    fusion_dim: int = 256
    fusion_heads: int = 8
    layer_scale: float = 1e-4
    text_dim: int = 0
    logit_scale: float = 10.0
    prior: float = 0.01
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    center_radius: float = 1.5
    score_threshold: float = 0.05
    nms: float = 0.6
    detections: int = 100
    candidates: int = 1000
    dense_mode: str = "vanilla"
    novel: list[str] = field(default_factory=list)
    mask_head: bool = False
    mask_samples: int = 64
    answers: list[str] = field(default_factory=list)
    vqa_hidden: int = 0
    context: int = 0
    embed_dim: int = 0
    width: int = 0
    patch_size: int = 0
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, values: Mapping[str, Any]) -> "GLIPConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"GLIP config: unknown key(s) {unknown}")
        return cls(**dict(values))


def _check(c: GLIPConfig, facts: TowerFacts) -> None:
    if len(c.taps) != len(c.strides):
        raise ConfigError(f"taps {c.taps}: expected one block index per stride {c.strides}")
    if any(not 0 <= t < facts.num_blocks for t in c.taps):
        raise ConfigError(f"taps {c.taps}: expected blocks of this {facts.num_blocks}-block tower")
    if any(s != power_of_two(s) for s in c.strides) or c.strides != sorted(set(c.strides)):
        raise ConfigError(f"strides {c.strides}: expected increasing powers of two")
    if c.image_size % (2 * c.strides[-1]) or c.image_size < 2 * c.strides[-1]:
        raise ConfigError(f"image_size {c.image_size}: expected a multiple of {2 * c.strides[-1]}")
    if c.layers < 0 or c.channels < 1 or c.fusion_dim < 1 or c.fusion_heads < 1 or c.fusion_dim % c.fusion_heads:
        raise ConfigError("layers >= 0, channels >= 1, and fusion_dim a positive multiple of fusion_heads expected")
    if not (0 < c.prior < 1 and 0 <= c.focal_alpha <= 1 and c.focal_gamma >= 0 and c.logit_scale > 0):
        raise ConfigError("prior in (0, 1), focal_alpha in [0, 1], focal_gamma >= 0, logit_scale > 0 expected")
    if c.mask_samples < 1:
        raise ConfigError(f"mask_samples {c.mask_samples}: expected >= 1 regions per image")
    if c.detections < 1 or c.candidates < 1 or not 0 <= c.nms <= 1 or not 0 <= c.score_threshold <= 1:
        raise ConfigError("detections, candidates >= 1 and nms, score_threshold in [0, 1] expected")


def resolve_glip_config(config: GLIPConfig, facts: TowerFacts, context: int, mean: Any, std: Any) -> GLIPConfig:
    """Fill taps, sizes, widths, the text context and normalisation from the backbone; validate."""
    taps = [int(t) for t in config.taps] or default_taps(facts.num_blocks)[-len(config.strides):]
    out = dataclasses.replace(config, taps=taps, strides=[int(s) for s in config.strides],
                              embed_dim=facts.output_dim, width=facts.width, patch_size=int(facts.patch_size[0]),
                              context=int(context), text_dim=int(config.text_dim or config.channels),
                              mean=[float(m) for m in mean], std=[float(s) for s in std])
    if out.image_size < 0:
        raise ConfigError(f"image_size {out.image_size}: expected a side in pixels (0 = twice the tower's input)")
    size = out.image_size or 2 * max(facts.image_size)
    out.image_size = int(math.ceil(size / (2 * out.strides[-1])) * 2 * out.strides[-1])
    _check(out, facts)
    return out
