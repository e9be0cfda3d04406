"""Model families that are not open_clip CLIPs (GroupViT), found by registry, never by model-name strings.

A family owns named architectures (JSON configs that say which family they belong to under ``FAMILY_KEY``) and
builds a model from a config; ``load_model`` asks this registry before open_clip's, and a checkpoint whose
stored config names a family is rebuilt by that family. The model a family builds is open_clip-like
(``encode_image`` / ``encode_text`` / ``logit_scale`` / ``visual.image_size`` / ``visual.preprocess_cfg``), so
zero-shot classification, retrieval and training work on it unchanged.
"""
from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from typing import Any, Callable

import torch
from torch import nn

from ..errors import ModelLoadError

#: the key of a model config naming the family that builds it (absent from open_clip configs)
FAMILY_KEY = "clipdense_family"
#: modules whose import registers families (imported on the first lookup)
PROVIDERS: list[str] = ["clipdense.models.groupvit"]


class ModelFamily(ABC):
    """One family of models: its architectures by name and how to build one."""

    #: the family's name, written into its configs under ``FAMILY_KEY``
    name: str = ""

    def __init__(self) -> None:
        self._runtime: dict[str, dict[str, Any]] = {}

    @abstractmethod
    def builtin(self) -> dict[str, dict[str, Any]]:
        """Architectures shipped with clipdense: name -> config."""

    @abstractmethod
    def create(self, name: str, config: dict[str, Any], tokenizer: str | None
               ) -> tuple[nn.Module, Callable[[Any], torch.Tensor], Callable[..., torch.Tensor]]:
        """(model with random weights, validation preprocess, tokenizer) of architecture ``config``; ``tokenizer``
        is a tokenizer folder replacing the config's own."""

    def config(self, name: str) -> dict[str, Any] | None:
        """The config of a built-in architecture or of one registered from a checkpoint."""
        found = self._runtime.get(name) or self.builtin().get(name)
        return None if found is None else dict(found)

    def register(self, name: str, config: dict[str, Any]) -> None:
        """Remember an architecture read from a checkpoint, so its runs export it under ``name``."""
        if self.builtin().get(name) != config:
            self._runtime[name] = dict(config)

    def names(self) -> list[str]:
        return sorted({*self.builtin(), *self._runtime})


FAMILIES: dict[str, ModelFamily] = {}
_imported = False


def register_family(family: ModelFamily) -> ModelFamily:
    """Add ``family`` (a second family under a taken name is a programming error)."""
    taken = FAMILIES.get(family.name)
    if taken is not None and type(taken) is not type(family):
        raise ValueError(f"model family {family.name!r} is already registered by {type(taken).__name__}")
    FAMILIES.setdefault(family.name, family)
    return FAMILIES[family.name]


def _families() -> dict[str, ModelFamily]:
    global _imported
    if not _imported:
        for module in PROVIDERS:
            importlib.import_module(module)
        _imported = True
    return FAMILIES


def family_of_name(name: str) -> ModelFamily | None:
    """The family that has an architecture called ``name`` (None: an open_clip name, or unknown)."""
    return next((f for f in _families().values() if f.config(name) is not None), None)


def family_of_config(config: dict[str, Any] | None) -> ModelFamily | None:
    """The family a stored config names under ``FAMILY_KEY`` (None: an open_clip config; an unknown family is a
    ModelLoadError)."""
    if not config or FAMILY_KEY not in config:
        return None
    family = _families().get(str(config[FAMILY_KEY]))
    if family is None:
        raise ModelLoadError(f"the stored config names model family {config[FAMILY_KEY]!r}, which this version of "
                             f"clipdense does not know (known: {sorted(FAMILIES)})")
    return family


def family_models() -> list[str]:
    """Every architecture name of every family (for `clipdense info`)."""
    return sorted(n for f in _families().values() for n in f.names())
