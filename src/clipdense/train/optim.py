"""AdamW with the usual CLIP exclusions and the cosine-with-warmup learning rate."""
from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import nn

from ..errors import ConfigError
from ..objectives.base import LR_SCALE


def _no_decay(name: str, param: nn.Parameter) -> bool:
    """Norm gains, biases, temperature/bias scalars and embeddings are not decayed (as open_clip)."""
    leaf = name.rsplit(".", 1)[-1]
    return param.ndim < 2 or "embedding" in name or leaf in ("logit_scale", "logit_bias")


def build_optimizer(named_params: Iterable[tuple[str, nn.Parameter]], lr: float, weight_decay: float,
                    betas: tuple[float, float], eps: float, device: torch.device) -> torch.optim.AdamW:
    """AdamW over groups by decay / no decay and learning-rate factor (a parameter's ``LR_SCALE`` attribute, set by
    ``objectives.base.scale_lr``; 1 for all but a few objectives); fused on CUDA for speed."""
    grouped: dict[tuple[bool, float], list[nn.Parameter]] = {}
    for name, param in named_params:
        grouped.setdefault((not _no_decay(name, param), getattr(param, LR_SCALE, 1.0)), []).append(param)
    if not grouped:
        raise ConfigError("nothing to train: every parameter is frozen (check --lock-image-blocks / --lock-text-blocks)")
    groups = []
    for (decays, scale), params in sorted(grouped.items(), key=lambda item: (-item[0][1], item[0][0])):
        group = {"params": params, "weight_decay": weight_decay if decays else 0.0}
        groups.append(group if scale == 1.0 else {**group, "lr_scale": scale})
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=device.type == "cuda")


def lr_at(step: int, base_lr: float, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0) -> float:
    """Linear warmup to ``base_lr`` then cosine decay to ``base_lr * min_lr_ratio`` (step counts from 0).

    Stateless on purpose: resuming needs only the step number.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    floor = base_lr * min_lr_ratio
    return floor + 0.5 * (base_lr - floor) * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Apply the learning rate to every group (times the group's ``lr_scale``, where it has one)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
