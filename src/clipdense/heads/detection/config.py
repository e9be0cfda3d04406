"""The architecture of an open-vocabulary detector head, as data: saved as JSON in the head file.

Defaults follow CLIPSelf's F-ViT (four taps -> strides 4/8/16/32, FPN 256, RPN, RoIAlign 7x7, 4 conv + 2 FC box
head, cosine classifier at temperature 50, ensemble with the frozen CLIP's region score, NMS 0.4, 100 detections)
and ViLD (learned background embedding, an image-embedding branch, ensemble weight 2/3). Sizes that depend on the
backbone (taps, input size, anchors) are resolved from ``TowerFacts`` by ``resolve_config``.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from ...errors import ConfigError
from ...models.dense_modes import DENSE_MODES
from ...models.towers import TowerFacts

@dataclass
class DetectorConfig:
    """Everything that rebuilds a detector head's shapes and its test-time behaviour.

    Args:
        taps: four block indices whose token maps feed the pyramid ([] = F-ViT's rule, see ``default_taps``).
        strides: pyramid strides in pixels (powers of two; the ViT grid is resampled to the nearest power of two).
        image_size: detector input side: images are resized so the longest side is this (0 = 4x the model's).
        anchor_sizes: one anchor size per level plus the extra max-pool level (empty = 8 x stride).
        roi_canonical_scale / roi_canonical_level: a box of this side is RoI-pooled from the level of stride
            2^level (0 = the model's input size and its patch stride: a box the size of a CLIP input is read
            where the ViT's tokens are; torchvision's 224 / level 4 for a ViT-B/16).
        temperature / learn_temperature: scale of the cosine logits (F-ViT: 50, learned).
        alpha / beta: ensemble exponents of the second score for base / novel classes.
        clip_temperature: softmax temperature of the frozen CLIP's region score (0 = the model's logit scale).
        novel: the protocol's novel classes known at training (evaluation reports them apart).
        mask_head: add Mask R-CNN's mask branch (torchvision's ``MaskRCNNHeads`` + ``MaskRCNNPredictor``, RoIAlign
            14x14 on the pyramid, 28x28 masks), class-agnostic as in F-ViT / F-VLM so it segments novel classes too.
    """

    taps: list[int] = field(default_factory=list)
    strides: list[int] = field(default_factory=lambda: [4, 8, 16, 32])
    fpn_channels: int = 256
    head_convs: int = 4
    head_channels: int = 256
    fc_channels: int = 1024
    image_size: int = 0
    anchor_sizes: list[int] = field(default_factory=list)
    aspect_ratios: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])
    rpn_pre_nms_train: int = 2000
    rpn_post_nms_train: int = 2000
    rpn_pre_nms_test: int = 1000
    rpn_post_nms_test: int = 1000
    rpn_batch: int = 256
    roi_batch: int = 512
    roi_canonical_scale: int = 0
    roi_canonical_level: int = 0
    temperature: float = 50.0
    learn_temperature: bool = True
    dense_mode: str = "maskclip"
    clip_temperature: float = 0.0
    alpha: float = 0.1
    beta: float = 0.8
    nms: float = 0.4
    detections: int = 100
    score_threshold: float = 0.01
    templates: str = "imagenet"
    novel: list[str] = field(default_factory=list)
    mask_head: bool = False
    embed_dim: int = 0
    width: int = 0
    patch_size: int = 0
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, values: Mapping[str, Any]) -> "DetectorConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"detector config: unknown key(s) {unknown}")
        return cls(**dict(values))


def default_taps(num_blocks: int) -> list[int]:
    """F-ViT's taps: blocks 3, 5, 7, 11 of 12 (7, 11, 15, 23 of 24), i.e. depth/3, depth/2, 2 depth/3 and the
    last, 0-based; a short tower repeats blocks rather than failing (3 blocks: 0, 1, 1, 2)."""
    fractions = (1 / 3, 1 / 2, 2 / 3)
    taps = [max(0, int(round(num_blocks * f)) - 1) for f in fractions]
    return taps + [num_blocks - 1]


def power_of_two(value: float) -> int:
    """The power of two nearest ``value`` (a patch of 14 px is treated as stride 16)."""
    return 2 ** int(round(math.log2(value)))


def _check(config: DetectorConfig, facts: TowerFacts) -> None:
    if len(config.taps) != len(config.strides):
        raise ConfigError(f"taps {config.taps}: expected one block index per stride {config.strides}")
    bad = [t for t in config.taps if not 0 <= t < facts.num_blocks]
    if bad:
        raise ConfigError(f"taps {config.taps}: {bad} are not blocks of this {facts.num_blocks}-block tower "
                          f"(0..{facts.num_blocks - 1})")
    if any(s != power_of_two(s) for s in config.strides) or config.strides != sorted(set(config.strides)):
        raise ConfigError(f"strides {config.strides}: expected increasing powers of two (torchvision's RoIAlign "
                          "and anchor generator infer power-of-two strides)")
    if len(config.anchor_sizes) != len(config.strides) + 1:
        raise ConfigError(f"anchor_sizes {config.anchor_sizes}: expected {len(config.strides) + 1} sizes (one per "
                          "pyramid level and one for the extra max-pool level)")
    if config.dense_mode not in DENSE_MODES:
        raise ConfigError(f"dense_mode must be one of {sorted(DENSE_MODES)}, got {config.dense_mode!r}")
    if config.image_size % config.strides[-1] or config.image_size < 2 * config.strides[-1]:
        raise ConfigError(f"image_size {config.image_size}: expected a multiple of the largest stride "
                          f"{config.strides[-1]}, at least {2 * config.strides[-1]}")
    if not (0 <= config.alpha <= 1 and 0 <= config.beta <= 1):
        raise ConfigError(f"alpha {config.alpha} and beta {config.beta}: expected values in [0, 1]")
    if config.head_convs < 0 or min(config.fpn_channels, config.head_channels, config.fc_channels) < 1:
        raise ConfigError("fpn_channels, head_channels and fc_channels must be >= 1 and head_convs >= 0")


def resolve_config(config: DetectorConfig, facts: TowerFacts, mean: Any, std: Any) -> DetectorConfig:
    """Fill the backbone-dependent fields (taps, input size, anchors, widths, normalisation) and validate."""
    out = dataclasses.replace(config, taps=[int(t) for t in config.taps] or default_taps(facts.num_blocks),
                              strides=[int(s) for s in config.strides],
                              anchor_sizes=[int(a) for a in config.anchor_sizes],
                              embed_dim=facts.output_dim, width=facts.width, patch_size=int(facts.patch_size[0]),
                              mean=[float(m) for m in mean], std=[float(s) for s in std])
    if out.image_size < 0:   # refused before rounding, which would turn it into 0 and name the wrong value
        raise ConfigError(f"image_size {out.image_size}: expected a side in pixels (0 = 4x the tower's input size)")
    if not out.image_size:
        out.image_size = 4 * max(facts.image_size)
    out.image_size = int(math.ceil(out.image_size / out.strides[-1]) * out.strides[-1])
    if not out.anchor_sizes:
        out.anchor_sizes = [8 * s for s in out.strides] + [16 * out.strides[-1]]
    out.roi_canonical_scale = int(out.roi_canonical_scale or max(facts.image_size))
    out.roi_canonical_level = int(out.roi_canonical_level or math.log2(power_of_two(out.patch_size)))
    _check(out, facts)
    return out
