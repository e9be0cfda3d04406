"""The method registry: explicit names (never inferred) for every few-shot method.

Each ``Adapter`` subclass registers itself when it is defined (``base.ADAPTERS``); this module
imports them all, so the registry is complete once the package is imported.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch

from ...config import build_config
from ...errors import ConfigError
from .base import ADAPTERS, Adapter
from .clip_adapter import ClipAdapter
from .cocoop import CoCoOp
from .coop import CoOp
from .linear_probe import LinearProbe
from .maple import MaPLe
from .tip_adapter import TipAdapter, TipAdapterF


class ZeroShot(Adapter):
    """The baseline every method is compared with: CLIP's own text classifier, nothing learned."""

    method = "zero-shot"

    def logits(self, features: torch.Tensor, classnames: Sequence[str] | None = None) -> torch.Tensor:
        names = self.resolve_classes(classnames)
        return self.logit_scale() * features.to(self.device) @ self.zero_shot_weights(names).T


#: methods `clipdense adapt` offers (the zero-shot baseline learns nothing to save).
METHODS: tuple[str, ...] = tuple(cls.method for cls in (LinearProbe, CoOp, CoCoOp, MaPLe, ClipAdapter, TipAdapter,
                                                        TipAdapterF))
#: methods trained by the engine (the others are closed-form or training-free).
TRAINED: tuple[str, ...] = tuple(method for method in METHODS if ADAPTERS[method].trained)


def adapter_class(method: str) -> type[Adapter]:
    if method not in ADAPTERS:
        raise ConfigError(f"unknown adapter method {method!r}; choose one of {list(ADAPTERS)}")
    return ADAPTERS[method]


def build_adapter(method: str, bundle: Any, classes: Sequence[str], options: dict[str, Any] | None = None) -> Adapter:
    """Construct ``method`` with its ``Config`` fields from ``options`` (unknown names are a one-line error)."""
    cls = adapter_class(method)
    return cls(bundle, classes, build_config(cls.Config, None, dict(options or {})))
