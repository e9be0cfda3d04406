"""The small optimisation loop CLIP-guided generation shares: Adam groups with step schedules, gradients taken
for the drawing's tensors only (the CLIP's own weights get no ``.grad``: the user's bundle is left as it was)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import torch

from ..errors import ConfigError


@dataclass
class OptimiserGroups:
    """One Adam over named parameter groups; ``schedule[name]`` = ((fraction of steps, lr factor), ...)."""

    optimiser: torch.optim.Optimizer
    names: list[str]
    base_lr: list[float]
    schedule: Mapping[str, Sequence[tuple[float, float]]]
    total: int

    @classmethod
    def adam(cls, groups: Mapping[str, tuple[list[torch.Tensor], float]], total: int,
             schedule: Mapping[str, Sequence[tuple[float, float]]] | None = None) -> "OptimiserGroups":
        params = [{"params": tensors, "lr": lr} for tensors, lr in groups.values() if tensors]
        names = [name for name, (tensors, _) in groups.items() if tensors]
        if not params:
            raise ConfigError("nothing to optimise: every parameter group is empty")
        return cls(torch.optim.Adam(params), names, [g["lr"] for g in params], dict(schedule or {}), total)

    @property
    def tensors(self) -> list[torch.Tensor]:
        return [t for group in self.optimiser.param_groups for t in group["params"]]

    def set_step(self, step: int) -> None:
        """Apply the schedule: a group's rate is its base times the factor of the last milestone passed."""
        for group, name, base in zip(self.optimiser.param_groups, self.names, self.base_lr):
            factor = 1.0
            for fraction, value in self.schedule.get(name, ()):
                if step >= int(fraction * self.total):
                    factor = value
            group["lr"] = base * factor


def run_steps(loss_of_step: Callable[[int], torch.Tensor], groups: OptimiserGroups, steps: int,
              after_step: Callable[[], None] | None = None,
              on_step: Callable[[int, float], None] | None = None) -> list[float]:
    """``steps`` Adam steps on ``loss_of_step(step)``; returns each step's loss (read before its update)."""
    tensors = groups.tensors
    losses: list[float] = []
    for step in range(steps):
        groups.set_step(step)
        loss = loss_of_step(step)
        grads = torch.autograd.grad(loss, tensors, allow_unused=True)
        for tensor, grad in zip(tensors, grads):
            tensor.grad = torch.zeros_like(tensor) if grad is None else grad
        groups.optimiser.step()
        if after_step is not None:
            with torch.no_grad():
                after_step()
        losses.append(float(loss.detach()))
        if on_step is not None:
            on_step(step, losses[-1])
    return losses
