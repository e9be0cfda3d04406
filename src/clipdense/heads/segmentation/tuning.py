"""The CLIP tensors a segmentation head fine-tunes, owned by the head as deltas.

Cat-Seg fine-tunes only the attention query and value projections of CLIP (and the image tower's
position table) at 0.01x the head's learning rate. Here the backbone itself never changes: the head
holds one delta per tuned tensor (or per q / v row block of a packed q-k-v tensor) and runs the frozen
CLIP through ``torch.func.functional_call`` with ``original + scale * delta`` in place of each tuned
tensor. So a head file carries everything it learned, it stays bound to the fingerprint of the weights it
was trained on, and ``load_head`` on those weights reproduces its predictions exactly.

Why ``scale * delta`` with the gradient of ``delta`` left unscaled: Adam's step does not depend on the
gradient's scale, so a tensor written as ``original + scale * delta`` moves ``scale`` times the head's
learning rate per step, which is the recipe's lower learning rate without a second optimiser group
(weight decay pulls the delta towards zero, i.e. the tensor towards its pretrained value).

Which rows are queries and values is a property of the attention module's type (a registry below, keyed on
open_clip's / torch's ``MultiheadAttention`` and timm's ``Attention`` and ``EvaAttention``), never of a name.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torch
from timm.layers import Attention
from timm.models.eva import EvaAttention
from torch import nn
from torch.func import functional_call

from ...errors import ConfigError
from ...models.towers import OpenClipTower, TimmTower, tower_of


@dataclass(frozen=True)
class TunedTensor:
    """One tuned piece of a CLIP parameter.

    Args:
        name: the parameter's path in the CLIP model (``visual.transformer.resblocks.0.attn.in_proj_weight``).
        rows: the row range ``[start, stop)`` of a packed q-k-v tensor that is tuned (None: all of it).
    """

    name: str
    rows: tuple[int, int] | None = None

    @property
    def key(self) -> str:
        """A state-dict-safe name for the delta."""
        suffix = "" if self.rows is None else f"__rows_{self.rows[0]}_{self.rows[1]}"
        return self.name.replace(".", "__") + suffix


def _packed(prefix: str, weight: str, bias: str | None, width: int) -> list[TunedTensor]:
    """The q rows [0, W) and v rows [2W, 3W) of a packed (3W, ...) weight and its bias."""
    names = [weight] + ([bias] if bias else [])
    return [TunedTensor(f"{prefix}{name}", rows) for name in names for rows in ((0, width), (2 * width, 3 * width))]


def _mha(prefix: str, module: nn.MultiheadAttention) -> list[TunedTensor]:
    width = module.embed_dim
    bias = "in_proj_bias" if module.in_proj_bias is not None else None
    if module._qkv_same_embed_dim:
        return _packed(prefix, "in_proj_weight", bias, width)
    rows = ((0, width), (2 * width, 3 * width))
    return [TunedTensor(f"{prefix}q_proj_weight"), TunedTensor(f"{prefix}v_proj_weight")] + \
        ([TunedTensor(f"{prefix}{bias}", r) for r in rows] if bias else [])


def _timm_attention(prefix: str, module: nn.Module) -> list[TunedTensor]:
    width = module.qkv.weight.shape[1]
    return _packed(prefix, "qkv.weight", "qkv.bias" if module.qkv.bias is not None else None, width)


def _eva_attention(prefix: str, module: nn.Module) -> list[TunedTensor]:
    if module.qkv is not None:
        out = _packed(prefix, "qkv.weight", None, module.qkv.weight.shape[1])
        return out + [TunedTensor(f"{prefix}{name}") for name in ("q_bias", "v_bias") if getattr(module, name) is not None]
    names = ["q_proj.weight", "v_proj.weight"] + \
        [f"{proj}.bias" for proj in ("q_proj", "v_proj") if getattr(module, proj).bias is not None]
    return [TunedTensor(f"{prefix}{name}") for name in names]


#: attention module type -> its query and value tensors
QUERY_VALUE: dict[type, Callable[[str, Any], list[TunedTensor]]] = {
    nn.MultiheadAttention: _mha,
    Attention: _timm_attention,
    EvaAttention: _eva_attention,
}
#: image-tower adapter type -> path of its position table inside the image tower
POSITION_TABLES: dict[type, str] = {OpenClipTower: "positional_embedding", TimmTower: "trunk.pos_embed"}


def _query_value_of(module: nn.Module) -> Callable[[str, Any], list[TunedTensor]] | None:
    for cls in type(module).__mro__:
        if cls in QUERY_VALUE:
            return QUERY_VALUE[cls]
    return None


def _position_table(model: nn.Module) -> list[TunedTensor]:
    tower = tower_of(model)
    for cls in type(tower).__mro__:
        if cls in POSITION_TABLES:
            path = POSITION_TABLES[cls]
            owner = tower.visual.get_submodule(path.rpartition(".")[0]) if "." in path else tower.visual
            return [TunedTensor(f"visual.{path}")] if getattr(owner, path.rpartition(".")[2]) is not None else []
    raise ConfigError(f"{type(tower).__name__}: no known position table to fine-tune (tune_positions=false)")


def tuned_tensors(model: nn.Module, image: bool, text: bool, positions: bool) -> list[TunedTensor]:
    """The q / v projections of every attention layer of the image tower (``image``) and of the rest of the
    model, i.e. the text tower (``text``), plus the image tower's position table (``positions``)."""
    found: list[TunedTensor] = []
    for name, module in model.named_modules():
        rule = _query_value_of(module)
        in_image = name.startswith("visual.")
        if rule is not None and ((in_image and image) or (not in_image and text)):
            found.extend(rule(f"{name}.", module))
    if image and not any(t.name.startswith("visual.") for t in found):
        raise ConfigError(f"tune_image: found no attention layer clipdense can fine-tune in "
                          f"{type(model.visual).__name__} (known: {sorted(c.__name__ for c in QUERY_VALUE)})")
    return found + (_position_table(model) if positions else [])


class _Bound(nn.Module):
    """``fn(clip, *args)`` as a module, so ``functional_call`` can swap the CLIP's tensors for one call."""

    def __init__(self, clip: nn.Module, fn: Callable[..., Any]) -> None:
        super().__init__()
        self.clip, self.fn = clip, fn

    def forward(self, *args: Any) -> Any:
        return self.fn(self.clip, *args)


class TunedCLIP(nn.Module):
    """Deltas of some CLIP tensors; runs the frozen CLIP as if they had been fine-tuned.

    Args:
        clip: the backbone (kept outside this module's tree: never saved here, never optimised).
        tensors: what is tuned (``tuned_tensors``).
        scale: the tuned tensors' learning rate relative to the head's (the recipe: 0.01).
    """

    def __init__(self, clip: nn.Module, tensors: Iterable[TunedTensor], scale: float) -> None:
        super().__init__()
        if not scale > 0:
            raise ConfigError(f"tuned_lr_scale must be > 0, got {scale}")
        object.__setattr__(self, "clip", clip)
        self.scale = float(scale)
        self.tensors = list(tensors)
        params = dict(clip.named_parameters())
        self.deltas = nn.ParameterDict()
        for tensor in self.tensors:
            base = params[tensor.name]
            shape = base.shape if tensor.rows is None else (tensor.rows[1] - tensor.rows[0], *base.shape[1:])
            self.deltas[tensor.key] = nn.Parameter(torch.zeros(shape, dtype=base.dtype, device=base.device))

    def _shifted(self, delta: torch.Tensor) -> torch.Tensor:
        """Value ``scale * delta``; gradient with respect to ``delta`` unscaled (see the module docstring)."""
        return delta.detach() * self.scale + (delta - delta.detach())

    def overrides(self) -> dict[str, torch.Tensor]:
        """``clip.NAME -> tuned tensor`` for every parameter that has a tuned piece."""
        params = dict(self.clip.named_parameters())
        pieces: dict[str, list[tuple[tuple[int, int] | None, torch.Tensor]]] = {}
        for tensor in self.tensors:
            pieces.setdefault(tensor.name, []).append((tensor.rows, self._shifted(self.deltas[tensor.key])))
        out = {}
        for name, parts in pieces.items():
            base = params[name].detach()
            if parts[0][0] is None:
                out[f"clip.{name}"] = base + parts[0][1].to(base.dtype)
                continue
            rows, stop = [], 0
            for (start, end), shift in sorted(parts, key=lambda item: item[0][0]):
                rows += [base[stop:start], base[start:end] + shift.to(base.dtype)]
                stop = end
            out[f"clip.{name}"] = torch.cat(rows + [base[stop:]])
        return out

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(clip, *args)`` with the tuned tensors in place (the CLIP's own tensors are untouched)."""
        if not self.tensors:
            return fn(self.clip, *args)
        return functional_call(_Bound(self.clip, fn), self.overrides(), args)

    def tuned_names(self) -> list[str]:
        """The CLIP parameters that have a tuned piece (for messages and tests)."""
        return sorted({t.name for t in self.tensors})
