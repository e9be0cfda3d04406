"""What every few-shot method shares: the frozen model it wraps, its text classifier, save and load.

An adapter is a small ``nn.Module`` whose state dict holds only what it learned (prompts,
adapters, caches); the CLIP model stays outside its module tree so the saved file is small and
the engine's optimiser can never touch the frozen weights.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...config import build_config
from ...errors import ClipDenseError, ConfigError
from ...models.text import text_classifier
from ..io import save_head
from ..registry import HeadKind, register_head_kind

#: every few-shot method by its explicit name, filled as the classes are defined (``Adapter.__init_subclass__``)
ADAPTERS: dict[str, type["Adapter"]] = {}


@dataclass
class AdapterConfig:
    """A method's architecture (saved as the head's config; the few-shot objectives' ``Options`` extend it).

    Args:
        templates: prompt template set of CLIP's text classifier, for the methods that start from it.
    """

    templates: str = "photo"


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in percent."""
    return float((logits.argmax(-1).cpu() == labels.cpu()).float().mean() * 100)


class Adapter(nn.Module):
    """Base class of the few-shot methods: scores images against class names.

    Args:
        bundle: the loaded model (``cd.load_model``); its weights are frozen (requires_grad off).
        classes: the classes trained on (order = label index).
        config: the method's ``Config`` (default: its defaults); an objective's ``Options`` (a subclass) is accepted.
    """

    method: ClassVar[str] = ""
    Config: ClassVar[type[AdapterConfig]] = AdapterConfig
    #: True when the method can only score the classes it was trained on (linear probe).
    closed_set: ClassVar[bool] = False
    #: True when gradient steps on the engine fit it (the others are closed-form or training-free).
    trained: ClassVar[bool] = False
    #: True when its prompts change the image tower, so image features need gradients.
    needs_pixels: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A subclass that names its ``method`` is registered as a method and as head kind adapter/<method>."""
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("method"):
            register_adapter(cls)

    def __init__(self, bundle: Any, classes: Sequence[str], config: AdapterConfig | None = None) -> None:
        super().__init__()
        if not classes:
            raise ConfigError("an adapter needs at least one class")
        config = self.Config() if config is None else config
        if not isinstance(config, self.Config):
            raise ConfigError(f"{self.method}: expected a {self.Config.__name__}, got {type(config).__name__}")
        bundle.model.requires_grad_(False)
        bundle.model.eval()
        object.__setattr__(self, "bundle", bundle)  # not a submodule: never saved, never optimised
        self.config, self.classes, self.templates = config, list(classes), config.templates
        self._text_cache: dict[tuple[str, ...], torch.Tensor] = {}

    # ----------------------------------------------------------------------------- interface
    @property
    def clip(self) -> nn.Module:
        return self.bundle.model

    @property
    def device(self) -> torch.device:
        return next(self.clip.parameters()).device

    def head_config(self) -> dict[str, Any]:
        """The ``Config`` fields (JSON) that rebuild this adapter's shapes on load (training-only fields of an
        objective's ``Options`` are left out)."""
        return {f.name: getattr(self.config, f.name) for f in dataclasses.fields(self.Config)}

    @classmethod
    def from_head_config(cls, config: Mapping[str, Any], bundle: Any, classes: Sequence[str] | None) -> "Adapter":
        """Rebuild (untrained) from a head file's config (= ``head_config()``) and vocabulary."""
        if not classes:
            raise ConfigError(f"{cls.method} needs the class vocabulary it was trained on")
        return cls(bundle, list(classes), build_config(cls.Config, None, dict(config)))

    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, D) unit-norm image features; methods that prompt the image tower override this."""
        return F.normalize(self.clip.encode_image(pixels.to(self.device)).float(), dim=-1)

    def logits(self, features: torch.Tensor, classnames: Sequence[str] | None = None) -> torch.Tensor:
        """(B, C) scores of ``features`` (from ``encode_images``) against ``classnames``."""
        raise ClipDenseError(f"{type(self).__name__} does not define logits()")

    @torch.no_grad()
    def predict(self, pixels: torch.Tensor, classnames: Sequence[str] | None = None) -> torch.Tensor:
        """(B, C) class probabilities for preprocessed images."""
        return self.logits(self.encode_images(pixels), classnames).softmax(-1)

    # ------------------------------------------------------------------------------- helpers
    def resolve_classes(self, classnames: Sequence[str] | None) -> list[str]:
        """Default to the trained classes; closed-set methods refuse classes they never saw."""
        names = list(self.classes if classnames is None else classnames)
        if not names:
            raise ConfigError("classnames: empty list")
        if self.closed_set:
            unknown = [c for c in names if c not in self.classes]
            if unknown:
                raise ConfigError(f"{self.method} can only score the classes it was trained on; "
                                  f"unknown: {unknown[:3]}")
        return names

    def zero_shot_weights(self, classnames: Sequence[str]) -> torch.Tensor:
        """(C, D) frozen CLIP text classifier, memoised (the text tower never changes)."""
        key = tuple(classnames)
        if key not in self._text_cache:
            self._text_cache[key] = text_classifier(self.bundle, list(classnames), self.templates).to(self.device)
        return self._text_cache[key]

    def trained_columns(self, classnames: Sequence[str]) -> torch.Tensor:
        """Index of each name among the trained classes (-1 for a class never trained on)."""
        return torch.tensor([self.classes.index(c) if c in self.classes else -1 for c in classnames],
                            device=self.device)

    @torch.no_grad()
    def embed_dim(self) -> int:
        """Width of the joint embedding space (one tiny text forward, architecture-agnostic)."""
        return int(self.clip.encode_text(self.bundle.tokenizer([""]).to(self.device)).shape[-1])

    def logit_scale(self) -> torch.Tensor:
        return self.clip.logit_scale.exp().float().detach()


# ----------------------------------------------------------------------------- registry, files
def register_adapter(cls: type[Adapter]) -> None:
    """Make ``cls`` a method (``ADAPTERS``) and a head kind, so its files load with ``load_head``."""
    taken = ADAPTERS.get(cls.method)
    if taken is not None and (taken.__module__, taken.__qualname__) != (cls.__module__, cls.__qualname__):
        raise ConfigError(f"adapter method {cls.method!r} is already {taken.__qualname__}")
    ADAPTERS[cls.method] = cls
    register_head_kind(HeadKind(name=f"adapter/{cls.method}", module_type=cls, build=cls.from_head_config,
                                config_of=lambda adapter: adapter.head_config(),
                                classes_of=lambda adapter: list(adapter.classes)))


def save_adapter(adapter: Adapter, path: str | os.PathLike) -> Path:
    """Save as a head file (kind adapter/<method>, options, classes, the model's spec and fingerprint)."""
    return save_head(adapter, path, adapter.bundle)


def load_adapter(path: str | os.PathLike, bundle: Any) -> Adapter:
    """The adapter head at ``path`` rebuilt on ``bundle`` (which must hold the weights it was trained on)."""
    from ..expect import load_expected

    return load_expected(path, bundle, "adapter", "adapter")   # type: ignore[return-value]
