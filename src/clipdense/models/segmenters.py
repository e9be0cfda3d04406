"""Models that segment by their own mechanism (GroupViT's grouping), registered by model type.

Zero-shot segmentation of a plain CLIP reads a dense map in some dense mode and compares it with text. A model
that makes its own segments instead registers a ``ModelSegmenter`` for its class; ``segment``, the evaluation's
segmentation and region tasks and ``clipdense segment`` then use it whenever the model is of that type (dense
modes do not apply to it). Lookup walks the model's class hierarchy: no name strings.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable, ClassVar

import torch
from torch import nn


class ModelSegmenter(ABC):
    """Segmentation by a model's own segments.

    Args:
        model: the model (an instance of the registered type).
    """

    #: how results name this way of segmenting (in place of a dense mode's name)
    name: ClassVar[str] = ""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    @abstractmethod
    def class_scores(self, images: torch.Tensor, classifier: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) per-pixel class scores in [0, 1] at the images' size, for a (C, D) unit-norm text
        classifier: argmax is the label, and a pixel whose best score is under a threshold is background."""

    @abstractmethod
    def dense(self, images: torch.Tensor) -> torch.Tensor:
        """(B, D, h, w) unit-norm features in the joint space, each location taking its segment's embedding."""

    @abstractmethod
    def segments(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The segments the model made, one (B, H, W) int map of segment indices at image size per stage."""


_SEGMENTERS: dict[type, type[ModelSegmenter]] = {}


def register_segmenter(model_type: type) -> Callable[[type[ModelSegmenter]], type[ModelSegmenter]]:
    """Class decorator: segment models that are instances of ``model_type`` with the decorated class."""
    def add(cls: type[ModelSegmenter]) -> type[ModelSegmenter]:
        _SEGMENTERS[model_type] = cls
        return cls
    return add


def segmenter_of(model: nn.Module) -> ModelSegmenter | None:
    """The segmenter registered for ``model``'s type (or a base of it); None for models read by dense modes."""
    for cls in type(model).__mro__:
        if cls in _SEGMENTERS:
            return _SEGMENTERS[cls](model)
    return None
