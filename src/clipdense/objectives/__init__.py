"""Training objectives, chosen by explicit name (``clipdense train --objective NAME``).

Each is one module with one ``Objective`` subclass that has a ``name`` and an ``Options``
dataclass; ``build_objective`` validates the options against it (unknown keys are errors).
"""
from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping

import torch
from torch import nn

from ..config import build_config
from ..errors import ConfigError
from ..train.objective import Objective

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


def build_objective(name: str, model: nn.Module, tokenizer: Callable[..., torch.Tensor],
                    options: Mapping[str, Any] | None = None, total_steps: int = 1) -> Objective:
    """Construct objective ``name`` around ``model`` with validated ``options``."""
    cls = objective_class(name)
    opts = build_config(cls.Options, None, dict(options or {}))
    return cls(model, tokenizer, opts, total_steps=total_steps)
