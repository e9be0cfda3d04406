"""What the trained segmentation heads share: the backbone they run on, the CLIP tensors they fine-tune,
per-template text embeddings, and whole-image or sliding-window inference at any size.

A head maps ``(images, text embeddings)`` to one score per class per pixel. It runs the frozen backbone
through ``TunedCLIP`` (its fine-tuned tensors in place), so the backbone bundle is shared, never copied,
and never changed; the head's state dict holds only what it learned.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...config import build_config
from ...errors import ConfigError
from ...models.dense import DENSE_MODES, DenseOutput, dense_forward, tower_facts
from ...models.text import resolve_templates
from ..registry import HeadKind, register_head_kind
from .tuning import TunedCLIP, tuned_tensors


@dataclass
class SegHeadConfig:
    """The architecture fields every segmentation head has (saved in its head file).

    Args:
        templates: prompt templates, a set name (``imagenet``, ``world`` ...) or a list of '{}' strings; Cat-Seg
            keeps one cost channel per template, so their number is part of the architecture.
        dense_mode: how the last block makes the dense map (Cat-Seg: maskclip-style value path).
        guidance_layers: two block indices whose token maps guide the upsampling decoder, deepest used
            first; empty = about a third and two thirds of the depth (blocks 4 and 8 of a 12-block ViT).
        image_size: the side the head was trained at; inference resizes the short side to it by default
            (0 = the backbone's input size).
        tune_image / tune_text: fine-tune the attention query and value projections of the image / text tower.
        tune_positions: fine-tune the image tower's position table.
        tuned_lr_scale: learning rate of the tuned CLIP tensors relative to the head's (recipe: 0.01).
    """

    templates: Any = "imagenet"
    dense_mode: str = "maskclip"
    guidance_layers: list[int] = field(default_factory=list)
    image_size: int = 0
    tune_image: bool = True
    tune_text: bool = True
    tune_positions: bool = True
    tuned_lr_scale: float = 0.01


def default_guidance_layers(depth: int) -> list[int]:
    """Blocks at one and two thirds of the depth (0-based): 3 and 7 of 12, 0 and 1 of 3."""
    return [max(0, depth // 3 - 1), max(0, 2 * depth // 3 - 1)]


def _guidance_layers(layers: Sequence[int], depth: int) -> list[int]:
    """Two block indices in [0, depth), shallow first (negative ones counted from the end)."""
    chosen = list(layers) or default_guidance_layers(depth)
    if len(chosen) != 2 or not all(isinstance(i, int) and -depth <= i < depth for i in chosen):
        raise ConfigError(f"guidance_layers: expected two block indices of this {depth}-block tower, got {chosen}")
    return sorted(i % depth for i in chosen)


def config_fields(cls: type, values: Any) -> dict[str, Any]:
    """The fields of dataclass ``cls`` read off ``values`` (a wider options object)."""
    return {f.name: getattr(values, f.name) for f in dataclasses.fields(cls)}


class SegmentationHead(nn.Module):
    """Base of the trained open-vocabulary segmenters (Cat-Seg, LSeg).

    Args:
        clip: the backbone CLIP model (frozen; outside this module's tree).
        tokenizer: its tokenizer.
        config: the head's architecture (a ``SegHeadConfig`` subclass).
        classes: the vocabulary it was trained on (recorded in its file; any classes work at inference).
    """

    kind: ClassVar[str] = ""
    Config: ClassVar[type] = SegHeadConfig

    def __init__(self, clip: nn.Module, tokenizer: Any, config: SegHeadConfig,
                 classes: Sequence[str] | None = None) -> None:
        super().__init__()
        if config.dense_mode not in DENSE_MODES:
            raise ConfigError(f"dense_mode must be one of {sorted(DENSE_MODES)}, got {config.dense_mode!r}")
        facts = tower_facts(clip)
        config.guidance_layers = _guidance_layers(config.guidance_layers, facts.num_blocks)
        config.image_size = int(config.image_size or facts.image_size[0])
        clip.requires_grad_(False)
        object.__setattr__(self, "clip", clip)
        object.__setattr__(self, "tokenizer", tokenizer)
        self.config, self.facts = config, facts
        self.classes = list(classes or [])
        self.templates = resolve_templates(config.templates)
        self.tuned = TunedCLIP(clip, tuned_tensors(clip, config.tune_image, config.tune_text, config.tune_positions),
                               config.tuned_lr_scale)
        self._text_cache: dict[tuple[str, ...], torch.Tensor] = {}

    # ------------------------------------------------------------------------------ head files
    @classmethod
    def from_head_config(cls, config: Mapping[str, Any], bundle: Any,
                         classes: Sequence[str] | None) -> "SegmentationHead":
        """Rebuild (untrained) from a head file's config on ``bundle``; unknown keys are errors."""
        return cls(bundle.model, bundle.tokenizer, build_config(cls.Config, None, dict(config)), classes)

    def head_config(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)

    @classmethod
    def register(cls) -> None:
        """Make this class the head kind ``cls.kind`` (``load_head`` then reads its files)."""
        register_head_kind(HeadKind(cls.kind, cls, cls.from_head_config, config_of=lambda head: head.head_config(),
                                    classes_of=lambda head: list(head.classes) or None))

    # ----------------------------------------------------------------------------- backbone
    @property
    def device(self) -> torch.device:
        return next(self.clip.parameters()).device

    def train(self, mode: bool = True) -> "SegmentationHead":
        super().train(mode)
        self._text_cache.clear()       # tuned text tensors may change while training
        return self

    def dense(self, images: torch.Tensor) -> DenseOutput:
        """The tuned backbone's dense map and the guidance blocks' token maps."""
        mode, layers = self.config.dense_mode, tuple(self.config.guidance_layers)
        return self.tuned.call(lambda clip, x: dense_forward(clip, x, mode, layers=layers), images)

    def _encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.tuned.call(lambda clip, t: clip.encode_text(t), tokens)

    def text_features(self, classes: Sequence[str], chunk: int = 1024) -> torch.Tensor:
        """(T, P, D) unit-norm embeddings of every class in every prompt template (gradient when the text
        tower is tuned and the head trains; memoised otherwise)."""
        if not classes:
            raise ConfigError("classes: empty list")
        key = tuple(classes)
        grad = self.training and self.config.tune_text and torch.is_grad_enabled()
        if not grad and key in self._text_cache:
            return self._text_cache[key]
        texts = [fill(name) for name in classes for fill in self.templates]
        with torch.set_grad_enabled(grad):
            parts = [self._encode_text(self.tokenizer(texts[i:i + chunk]).to(self.device)).float()
                     for i in range(0, len(texts), chunk)]
        out = F.normalize(torch.cat(parts), dim=-1).reshape(len(classes), len(self.templates), -1)
        if not grad:
            self._text_cache[key] = out
        return out

    # ------------------------------------------------------------------------------ inference
    def forward(self, images: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """(B, T, h', w') class scores of ``images`` (B, 3, H, W) for ``text`` (T, P, D)."""
        raise TypeError(f"{type(self).__name__} defines no forward(images, text)")

    def probabilities(self, scores: torch.Tensor) -> torch.Tensor:
        """Per-pixel class probabilities of ``forward``'s scores (over dim 1)."""
        raise TypeError(f"{type(self).__name__} defines no probabilities(scores)")

    @torch.no_grad()
    def segment_logits(self, images: torch.Tensor, classes: Sequence[str]) -> torch.Tensor:
        """(B, T, H, W) scores at the input's size, whole image (``tasks.segment`` adds sliding windows)."""
        scores = self(images.to(self.device), self.text_features(classes))
        return F.interpolate(scores.float(), size=images.shape[-2:], mode="bilinear", align_corners=False)
