"""Freezing the first blocks of a CLIP's towers (``--lock-image-blocks`` / ``--lock-text-blocks``): only the
objectives that train a CLIP apply it (``ClipTraining.lock_blocks``); the others refuse a non-zero count."""
from __future__ import annotations

from typing import Iterable

from torch import nn

from ..errors import ConfigError


def _freeze(modules: Iterable[nn.Module | nn.Parameter | None]) -> None:
    for item in modules:
        if item is None:
            continue
        params = [item] if isinstance(item, nn.Parameter) else item.parameters()
        for param in params:
            param.requires_grad_(False)


def lock_image_blocks(model: nn.Module, n_blocks: int) -> None:
    """Freeze the vision stem (patch embedding, class/pos embedding, ln_pre) and the first ``n_blocks`` blocks.

    open_clip's lock_image_tower counts unlocked groups from the end; users think "first N blocks".
    """
    if n_blocks <= 0:
        return
    visual = model.visual
    blocks = getattr(getattr(visual, "transformer", None), "resblocks", None)
    if blocks is None:
        raise ConfigError(f"lock_image_blocks: {type(visual).__name__} is not an open_clip VisionTransformer")
    if n_blocks > len(blocks):
        raise ConfigError(f"lock_image_blocks={n_blocks} but the vision tower has {len(blocks)} blocks")
    _freeze([visual.conv1, getattr(visual, "class_embedding", None), visual.positional_embedding,
             getattr(visual, "ln_pre", None), *blocks[:n_blocks]])


def lock_text_blocks(model: nn.Module, n_blocks: int) -> None:
    """Freeze the token and positional embeddings and the first ``n_blocks`` text blocks."""
    if n_blocks <= 0:
        return
    text = getattr(model, "text", model)  # CustomTextCLIP keeps the tower in .text, CLIP unpacks it
    blocks = getattr(getattr(text, "transformer", None), "resblocks", None)
    if blocks is None:
        raise ConfigError(f"lock_text_blocks: {type(model).__name__} has no open_clip text transformer")
    if n_blocks > len(blocks):
        raise ConfigError(f"lock_text_blocks={n_blocks} but the text tower has {len(blocks)} blocks")
    _freeze([getattr(text, "token_embedding", None), getattr(text, "positional_embedding", None),
             *blocks[:n_blocks]])
