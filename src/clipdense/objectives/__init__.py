"""Training objectives, chosen by explicit name (``clipdense train --objective NAME``).

Each is one module with one ``Objective`` subclass that has a ``name`` and an ``Options``
dataclass; ``build_objective`` validates the options against it (unknown keys are errors).
"""
from __future__ import annotations

import importlib
from typing import Any, Mapping

from ..config import build_config
from ..data.readers import DataInfo
from ..errors import ConfigError
from .base import Objective

# name -> "module:Class". Modules are imported on demand so one objective's extras never
# burden another. "clipself" (dense distillation) lives in clipself.py.
OBJECTIVES: dict[str, str] = {
    "clip": "clip:ClipObjective",
    "siglip": "siglip:SigLipObjective",
    "slip": "slip:SlipObjective",
    "silc": "silc:SilcObjective",
    "clipself": "clipself:ClipSelfObjective",
    "fvit": "fvit:FViTObjective",
    "vild": "vild:ViLDObjective",
    "catseg": "catseg:CatSegObjective",
    "lseg": "lseg:LSegObjective",
    "groupvit": "groupvit:GroupViTObjective",
    "coop": "fewshot:CoOpObjective",
    "cocoop": "fewshot:CoCoOpObjective",
    "maple": "fewshot:MaPLeObjective",
    "clip-adapter": "fewshot:ClipAdapterObjective",
    "tip-adapter-f": "fewshot:TipAdapterFObjective",
    "pointclip-adapter": "pointclip:PointClipAdapterObjective",
    "audioclip": "audioclip:AudioClipObjective",
    "clip4clip": "clip4clip:Clip4ClipObjective",
    "actionclip": "actionclip:ActionClipObjective",
    "videoclip": "videoclip:VideoClipObjective",
    "vqgan": "vqgan:VQGANObjective",
    "glip": "glip:GLIPObjective",
    "glipv2": "glip:GLIPv2Objective",
    "mask2former": "mask2former:Mask2FormerObjective",
}


def objective_class(name: str) -> type[Objective]:
    """The Objective class registered under ``name``."""
    if name not in OBJECTIVES:
        raise ConfigError(f"unknown objective {name!r}; choose one of {sorted(OBJECTIVES)}")
    module_name, class_name = OBJECTIVES[name].split(":")
    try:
        module = importlib.import_module(f"{__name__}.{module_name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"{__name__}.{module_name}":
            raise ConfigError(f"objective {name!r} is not available in this version of clipdense") from exc
        raise
    return getattr(module, class_name)


def objective_options(name: str, options: Mapping[str, Any] | None = None) -> Any:
    """Objective ``name``'s validated ``Options`` (unknown keys and bad values are one-line errors), before any
    model or data is opened."""
    return build_config(objective_class(name).Options, None, dict(options or {}))


def build_objective(name: str, bundle: Any, options: Any = None, info: DataInfo | None = None,
                    total_steps: int = 1) -> Objective:
    """Construct objective ``name`` in one go: on the loaded ``bundle``, with its options (a mapping, validated
    here, or an ``Options`` instance) and what the opened data says of itself (``info``)."""
    cls = objective_class(name)
    opts = options if isinstance(options, cls.Options) else objective_options(name, options)
    return cls(bundle, opts, info or DataInfo(), total_steps=total_steps)
