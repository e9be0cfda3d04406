"""Per-token text features of a CLIP text tower: what grounding heads (GLIP) align regions with.

``encode_text`` keeps one vector per text (the end token's); a grounding head needs one per token. These are the
tower's last hidden states after its final LayerNorm, mapped through the text projection into the joint space, so a
token's vector speaks the same language as the pooled embedding (the end token's row *is* the text embedding).
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError


def text_context(model: nn.Module) -> int:
    """The number of token positions the text tower reads (77 for CLIP)."""
    if hasattr(model, "positional_embedding") and hasattr(model, "token_embedding"):
        return int(model.positional_embedding.shape[0])
    text = getattr(model, "text", None)
    if text is not None and hasattr(text, "positional_embedding") and text.positional_embedding is not None:
        return int(text.positional_embedding.shape[0])
    context = getattr(model, "context_length", None)
    if context:
        return int(context)
    raise ConfigError(f"{type(model).__name__}: no text context length found (an open_clip text tower is needed)")


def _project(model_or_tower: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    projection = getattr(model_or_tower, "text_projection", None)
    if projection is None:
        return tokens
    if isinstance(projection, nn.Linear):
        return projection(tokens)
    return tokens @ projection


def encode_text_tokens(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """(B, L, D) token features in the joint space of an open_clip CLIP (built-in text transformer) or a
    ``CustomTextCLIP`` whose ``text`` is open_clip's ``TextTransformer``; ``ids``: (B, L) from the bundle's
    tokenizer. Other text towers (Hugging Face models) are refused in one line."""
    if hasattr(model, "token_embedding") and hasattr(model, "transformer") and hasattr(model, "ln_final"):
        cast = model.transformer.get_cast_dtype() if hasattr(model.transformer, "get_cast_dtype") else None
        x = model.token_embedding(ids)
        x = x.to(cast) if cast is not None else x
        x = x + model.positional_embedding.to(x.dtype)
        x = model.transformer(x, attn_mask=model.attn_mask)
        return _project(model, model.ln_final(x))
    text = getattr(model, "text", None)
    if text is not None and hasattr(text, "output_tokens") and hasattr(text, "ln_final"):
        before = text.output_tokens
        text.output_tokens = True
        try:
            _, tokens = text(ids)
        finally:
            text.output_tokens = before
        return _project(text, tokens)
    raise ConfigError(f"{type(model).__name__}: token features need an open_clip text transformer "
                      "(this model's text tower is not one)")
