"""Learnable prompts inside open_clip's towers, by hooks on its own modules (no copied forward code).

CoOp/CoCoOp replace the embeddings of placeholder tokens with learned context vectors: a forward
hook on the text tower's ``token_embedding`` swaps them in, and open_clip's ``encode_text`` does
the rest (positions, transformer, EOT pooling, projection). MaPLe also rewrites the hidden states
at those positions before the first J text blocks, and appends learned tokens to the vision
sequence before the first J vision blocks (removed again after the last block, so pooling and
token outputs see the usual sequence).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

from ...errors import ConfigError

CLASS_POSITIONS = ("end", "middle", "front")


def text_tower(model: nn.Module) -> nn.Module:
    """The module holding token_embedding and transformer (CLIP unpacks it; CustomTextCLIP has .text)."""
    tower = getattr(model, "text", model)
    if not hasattr(tower, "token_embedding") or not hasattr(getattr(tower, "transformer", None), "resblocks"):
        raise ConfigError(f"prompt learning needs an open_clip text transformer; {type(model).__name__} "
                          "has none (hf-hub text towers are not supported)")
    _check_batch_first(tower.transformer)
    return tower


def vision_blocks(model: nn.Module) -> nn.ModuleList:
    blocks = getattr(getattr(getattr(model, "visual", None), "transformer", None), "resblocks", None)
    if blocks is None:
        raise ConfigError(f"vision prompts need an open_clip VisionTransformer, not "
                          f"{type(getattr(model, 'visual', model)).__name__}")
    _check_batch_first(model.visual.transformer)
    return blocks


def _check_batch_first(transformer: nn.Module) -> None:
    """The hooks index (N, L, D) sequences, open_clip's layout since 2.24."""
    if not getattr(transformer, "batch_first", True):
        raise ConfigError("prompt hooks need a batch-first open_clip transformer (open_clip >= 2.24)")


def _inner(tokens: torch.Tensor) -> list[int]:
    """Token ids between start and end markers (zeros are padding)."""
    ids = [int(t) for t in tokens if int(t) != 0]
    return ids[1:-1]


@dataclass
class PromptTokens:
    """Token ids of one prompt per class and where its learnable context sits."""

    tokens: torch.Tensor      # (C, L) long
    ctx_mask: torch.Tensor    # (C, L) bool, exactly n_ctx True per row, in context order


def build_prompt_tokens(tokenizer: Callable[..., torch.Tensor], classnames: Sequence[str], n_ctx: int,
                        position: str = "end") -> PromptTokens:
    """``[SOT] X.. name X.. . [EOT]`` with the X placeholders at CoOp's class-token position."""
    if position not in CLASS_POSITIONS:
        raise ConfigError(f"class token position must be one of {CLASS_POSITIONS}, got {position!r}")
    if n_ctx < 1:
        raise ConfigError(f"n_ctx must be >= 1, got {n_ctx}")
    empty = [int(t) for t in tokenizer([""])[0] if int(t) != 0]
    if len(empty) != 2:
        raise ConfigError("prompt learning needs a tokenizer with start and end tokens (open_clip's CLIP BPE)")
    sot, eot = empty
    period, placeholder = _inner(tokenizer(["."])[0]), _inner(tokenizer(["X"])[0])[:1]
    length = tokenizer([""]).shape[1]
    rows, masks = [], []
    for name in classnames:
        words = _inner(tokenizer([name])[0])
        front, back = {"end": (n_ctx, 0), "middle": (n_ctx // 2, n_ctx - n_ctx // 2), "front": (0, n_ctx)}[position]
        parts = [([sot], False), (placeholder * front, True), (words, False), (placeholder * back, True),
                 (period + [eot], False)]
        ids = [i for part, _ in parts for i in part]
        flags = [flag for part, flag in parts for _ in part]
        if len(ids) > length:
            raise ConfigError(f"class name '{name}' with {n_ctx} context tokens exceeds the model's "
                              f"context length {length}")
        rows.append(ids + [0] * (length - len(ids)))
        masks.append(flags + [False] * (length - len(ids)))
    return PromptTokens(torch.tensor(rows, dtype=torch.long), torch.tensor(masks, dtype=torch.bool))


def init_context(model: nn.Module, tokenizer: Callable[..., torch.Tensor], n_ctx: int,
                 words: str | None, std: float = 0.02) -> tuple[torch.Tensor, int]:
    """(n_ctx, width) initial context: embeddings of ``words`` (e.g. "a photo of a"), else N(0, std)."""
    embedding = text_tower(model).token_embedding
    if not words:
        return torch.randn(n_ctx, embedding.weight.shape[1]) * std, n_ctx
    ids = torch.tensor(_inner(tokenizer([words])[0]), device=embedding.weight.device)
    with torch.no_grad():
        return embedding(ids).float().cpu(), len(ids)


def replace_positions(x: torch.Tensor, mask: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``x`` (N, L, D) with the ``mask`` (N, L) positions set to ``values`` (N, n, D), differentiably."""
    if x.shape[:2] != mask.shape:
        raise ConfigError(f"prompt hook saw a sequence of shape {tuple(x.shape[:2])}, expected {tuple(mask.shape)}")
    full = x.new_zeros(x.shape)
    full[mask] = values.reshape(-1, values.shape[-1]).to(x.dtype)
    return torch.where(mask[..., None], full, x)


@contextlib.contextmanager
def _hooks(handles: list[Any]) -> Iterator[None]:
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def text_prompt_hooks(model: nn.Module, ctx_mask: torch.Tensor, shallow: torch.Tensor,
                      deep: Sequence[torch.Tensor] = ()) -> contextlib.AbstractContextManager:
    """While active, ``encode_text`` sees ``shallow`` (N, n, D) as context embeddings, and ``deep[i]``
    (N, n, D) replaces the context hidden states entering text block i+1 (MaPLe)."""
    tower = text_tower(model)
    handles = [tower.token_embedding.register_forward_hook(
        lambda _m, _i, out: replace_positions(out, ctx_mask, shallow))]
    blocks = tower.transformer.resblocks
    if len(deep) >= len(blocks):
        raise ConfigError(f"prompt depth {len(deep) + 1} exceeds the text tower's {len(blocks)} blocks")
    for index, values in enumerate(deep):
        def pre(_m: nn.Module, args: tuple, kwargs: dict, values: torch.Tensor = values) -> tuple:
            return (replace_positions(args[0], ctx_mask, values), *args[1:]), kwargs
        handles.append(blocks[index + 1].register_forward_pre_hook(pre, with_kwargs=True))
    return _hooks(handles)


def vision_prompt_hooks(model: nn.Module, prompts: Sequence[torch.Tensor]) -> contextlib.AbstractContextManager:
    """While active, ``prompts[i]`` (n, D) tokens are appended before vision block 0 and replace the
    appended tokens before block i; they are dropped after the last block."""
    blocks = vision_blocks(model)
    if not prompts or len(prompts) > len(blocks):
        raise ConfigError(f"vision prompt depth {len(prompts)} must be in 1..{len(blocks)}")
    n = prompts[0].shape[0]

    def first(_m: nn.Module, args: tuple, kwargs: dict) -> tuple:
        x = args[0]
        extra = prompts[0].to(x.dtype)[None].expand(x.shape[0], -1, -1)
        return (torch.cat([x, extra], dim=1), *args[1:]), kwargs

    handles = [blocks[0].register_forward_pre_hook(first, with_kwargs=True)]
    for index in range(1, len(prompts)):
        def deeper(_m: nn.Module, args: tuple, kwargs: dict, p: torch.Tensor = prompts[index]) -> tuple:
            x = args[0]
            extra = p.to(x.dtype)[None].expand(x.shape[0], -1, -1)
            return (torch.cat([x[:, :-n], extra], dim=1), *args[1:]), kwargs
        handles.append(blocks[index].register_forward_pre_hook(deeper, with_kwargs=True))
    handles.append(blocks[-1].register_forward_hook(lambda _m, _i, out: out[:, :-n]))
    return _hooks(handles)
