"""Tiny random-init CLIPs with timm image towers, built the way open_clip builds EVA02-B-16 and
ViT-B-16-SigLIP (``TimmModel`` around the same timm architecture), only narrower and shallower."""
from __future__ import annotations

from typing import Any
from unittest import mock

import open_clip
import timm
import torch
from open_clip.model import CLIPTextCfg, CLIPVisionCfg, set_model_preprocess_cfg

from clipdense.models import Bundle

SIDE = 64
TIMM_NAMES = {"eva02": "eva02_base_patch16_clip_224", "siglip": "vit_base_patch16_siglip_224"}
# open_clip's own settings for EVA02-B-16 and ViT-B-16-SigLIP (pool, projection) and their image stats
OPEN_CLIP_CFG = {"eva02": ("token", None, open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD),
                 "siglip": ("map", "none", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))}
WIDTH = 48


def build_trunk_kwargs(side: int | tuple[int, int] = SIDE, **extra: Any) -> dict[str, Any]:
    """Reduced sizes passed to the timm constructor (patch 8, so a 64 px image is an 8x8 grid)."""
    return {"img_size": side, "patch_size": 8, "embed_dim": WIDTH, "depth": 3, "num_heads": 4, **extra}


def tiny_timm_clip(kind: str, seed: int = 0, side: int | tuple[int, int] = SIDE, **extra: Any) -> Bundle:
    """A CustomTextCLIP whose image tower is open_clip's TimmModel around a small ``kind`` trunk."""
    pool, proj, mean, std = OPEN_CLIP_CFG[kind]
    create = timm.create_model
    small = build_trunk_kwargs(side, **extra)
    embed_dim = WIDTH if proj == "none" else 32   # SigLIP's tower has no projection: text must match

    def create_small(name: str, **kwargs: Any) -> torch.nn.Module:
        return create(name, **{**kwargs, **small})

    torch.manual_seed(seed)
    with mock.patch.object(timm, "create_model", create_small):
        model = open_clip.CustomTextCLIP(
            embed_dim, CLIPVisionCfg(image_size=side, timm_model_name=TIMM_NAMES[kind], timm_pool=pool,
                                     timm_proj=proj),
            CLIPTextCfg(context_length=16, vocab_size=49408, width=32, heads=2, layers=1))
    size = (side, side) if isinstance(side, int) else tuple(side)
    set_model_preprocess_cfg(model, {"size": size, "mean": mean, "std": std, "interpolation": "bicubic",
                                     "resize_mode": "shortest", "fill_color": 0})
    preprocess = open_clip.image_transform(size, is_train=False, mean=mean, std=std)
    tokenizer = open_clip.get_tokenizer("ViT-B-16", context_length=16)
    return Bundle(model=model.eval(), tokenizer=tokenizer, preprocess=preprocess, name=f"tiny-{kind}",
                  pretrained=None, image_size=size)
