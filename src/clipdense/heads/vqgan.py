"""The VQGAN as a head file (kind ``generator/vqgan``): encoder, codebook and decoder, no discriminator.

Why a head file: the engine saves what an objective trains either as a CLIP model or as a head, and a head file
records the backbone it was trained beside. For the VQGAN that backbone is the CLIP whose block features were its
perceptual loss: the file says which CLIP shaped its pictures. Unlike other heads, the VQGAN never runs the CLIP,
so ``generation.vqgan.load_vqgan`` reads it without requiring that CLIP (VQGAN-CLIP may guide it with any CLIP).
"""
from __future__ import annotations

from typing import Any, Mapping

from torch import nn

from ..models.vqgan import VQGAN, VQGANConfig
from .registry import HeadKind, register_head_kind

KIND = "generator/vqgan"


def _build(config: Mapping[str, Any], bundle: Any, classes: list[str] | None) -> VQGAN:
    return VQGAN(VQGANConfig.from_dict(config["vqgan"]))


def _config_of(head: nn.Module) -> dict[str, Any]:
    return {"vqgan": head.config.to_dict()}


register_head_kind(HeadKind(KIND, VQGAN, _build, _config_of))
