"""The registry of head kinds: how a head file's ``kind`` becomes a module again.

A kind is a name (``"adapter/coop"``, ``"detector/fvit"``, ``"segmenter/catseg"``), the module class
it saves, how to rebuild that class from its JSON config + the backbone bundle + its vocabulary, and
how to read the config and vocabulary back off a module. A new head plugs in with one
``register_head_kind`` call next to its class; the loader never branches on kind names.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from torch import nn

from ..errors import ConfigError

#: modules whose import registers head kinds (imported on the first lookup of a kind not yet known,
#: so ``load_head`` reads every kind without its caller importing the package that defines it)
PROVIDERS: list[str] = ["clipdense.heads.adapters", "clipdense.heads.detection", "clipdense.heads.segmentation",
                       "clipdense.heads.audio", "clipdense.heads.pointclip",
                       "clipdense.heads.vqgan", "clipdense.heads.video", "clipdense.heads.grounding"]

Builder = Callable[[Mapping[str, Any], Any, "list[str] | None"], nn.Module]


def _no_vocabulary(_module: nn.Module) -> list[str] | None:
    return None


@dataclass(frozen=True)
class HeadKind:
    """One kind of head.

    Args:
        name: the registered name written into head files (``family/method``).
        module_type: the class ``save_head`` recognises as this kind (exact type).
        build: ``(config, backbone bundle, classes or None) -> module`` with the right shapes; the
            loader then fills its weights from the file.
        config_of: ``module -> JSON-able dict`` that ``build`` takes back.
        classes_of: ``module -> class vocabulary`` (None for heads without one).
    """

    name: str
    module_type: type[nn.Module]
    build: Builder
    config_of: Callable[[nn.Module], dict[str, Any]]
    classes_of: Callable[[nn.Module], "list[str] | None"] = _no_vocabulary


HEAD_KINDS: dict[str, HeadKind] = {}
_providers_imported: set[str] = set()


def register_head_kind(kind: HeadKind) -> HeadKind:
    """Add ``kind``; a second class under a taken name is an error (re-registering the same class is not)."""
    if not kind.name or any(ch.isspace() for ch in kind.name):
        raise ConfigError(f"head kind name {kind.name!r}: expected a non-empty name without spaces")
    taken = HEAD_KINDS.get(kind.name)
    if taken is not None and _class_path(taken.module_type) != _class_path(kind.module_type):
        raise ConfigError(f"head kind {kind.name!r} is already registered for {_class_path(taken.module_type)}")
    HEAD_KINDS[kind.name] = kind
    return kind


def _class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _import_providers() -> None:
    for module in PROVIDERS:
        if module not in _providers_imported:
            importlib.import_module(module)
            _providers_imported.add(module)


def find_head_kind(name: str) -> HeadKind | None:
    """The registered kind called ``name`` (importing the providers first if it is not known yet)."""
    if name not in HEAD_KINDS:
        _import_providers()
    return HEAD_KINDS.get(name)


def kind_of(module: nn.Module) -> HeadKind:
    """The kind whose class is exactly ``type(module)``."""
    for kind in HEAD_KINDS.values():
        if type(module) is kind.module_type:
            return kind
    raise ConfigError(f"{type(module).__name__} is not a registered head kind (known: {sorted(HEAD_KINDS)}); "
                      "register it with clipdense.heads.register_head_kind")


def known_head_kinds() -> list[str]:
    """Every registered kind name, providers included (for messages and `clipdense info`)."""
    _import_providers()
    return sorted(HEAD_KINDS)
