"""Grounding heads on a frozen CLIP (GLIP): regions aligned with the tokens of a prompt, so one head finds whatever
a sentence names and detects any class list written as a prompt.

    head = cd.load_head("runs/glip", bundle)      # kind grounder/glip
    found = cd.ground(bundle, image, "a red circle left of a blue star", head=head)
"""
from __future__ import annotations

from typing import Any, Mapping

from ..registry import HeadKind, register_head_kind
from .config import GLIPConfig, resolve_glip_config
from .fusion import BiAttention, FusionLayer, fusion_stack
from .glip import GLIPHead, Predictions


def _build(config: Mapping[str, Any], bundle: Any, classes: list[str] | None) -> GLIPHead:
    return GLIPHead(bundle, GLIPConfig.from_json(config), classes or [])


register_head_kind(HeadKind(name=GLIPHead.kind, module_type=GLIPHead, build=_build,
                            config_of=lambda head: head.config.to_json(),
                            classes_of=lambda head: list(head.classes)))

__all__ = ["BiAttention", "FusionLayer", "GLIPConfig", "GLIPHead", "Predictions", "fusion_stack",
           "resolve_glip_config"]
