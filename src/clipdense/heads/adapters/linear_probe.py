"""Linear probe: L2-regularised logistic regression on frozen image features (CLIP paper, Sec. 3.2).

Fitted in closed form by one L-BFGS solve per regularisation strength; the strength is chosen on
a validation split as CLIP does, then the probe is refitted with it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import DataError
from .base import Adapter, AdapterConfig, accuracy

WEIGHT_DECAYS = tuple(float(w) for w in torch.logspace(-6, 0, 7))
DEFAULT_WEIGHT_DECAY = 1e-4


def fit_logistic(features: torch.Tensor, labels: torch.Tensor, num_classes: int, weight_decay: float,
                 max_iter: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight (C, D), bias (C,)) minimising mean cross-entropy + weight_decay * ||W||^2."""
    features, labels = features.float(), labels.long()
    weight = torch.zeros(num_classes, features.shape[1], requires_grad=True)
    bias = torch.zeros(num_classes, requires_grad=True)
    solver = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def objective() -> torch.Tensor:
        solver.zero_grad()
        loss = F.cross_entropy(features @ weight.T + bias, labels) + weight_decay * weight.pow(2).sum()
        loss.backward()
        return loss

    solver.step(objective)
    return weight.detach(), bias.detach()


@dataclass
class LinearProbeConfig(AdapterConfig):
    """weight_decay: the L2 strength (``fit`` chooses it on validation when given held-out shots)."""

    weight_decay: float = DEFAULT_WEIGHT_DECAY


class LinearProbe(Adapter):
    """A linear classifier over the frozen image embedding; closed-set (it knows no class names)."""

    method = "linear-probe"
    Config = LinearProbeConfig
    closed_set = True

    def __init__(self, bundle: Any, classes: Sequence[str], config: LinearProbeConfig | None = None) -> None:
        super().__init__(bundle, classes, config)
        self.weight_decay = self.config.weight_decay
        self.linear = nn.Linear(self.embed_dim(), len(self.classes)).to(self.device)

    def head_config(self) -> dict[str, Any]:
        return {**super().head_config(), "weight_decay": self.weight_decay}

    def logits(self, features: torch.Tensor, classnames: Sequence[str] | None = None) -> torch.Tensor:
        columns = self.trained_columns(self.resolve_classes(classnames))
        return self.linear(features.to(self.device))[:, columns]

    @torch.no_grad()
    def fit(self, features: torch.Tensor, labels: torch.Tensor, val_features: torch.Tensor | None = None,
            val_labels: torch.Tensor | None = None) -> dict[str, float]:
        """Choose the weight decay on validation (if given), then fit on ``features``."""
        if len(features) == 0:
            raise DataError("linear probe: no training features")
        features, labels = features.cpu(), labels.cpu()
        scores: dict[float, float] = {}
        if val_features is not None and val_labels is not None and len(val_features):
            for decay in WEIGHT_DECAYS:
                with torch.enable_grad():
                    weight, bias = fit_logistic(features, labels, len(self.classes), decay)
                scores[decay] = accuracy(val_features.cpu().float() @ weight.T + bias, val_labels)
            self.weight_decay = max(scores, key=lambda d: (scores[d], d))
        with torch.enable_grad():
            weight, bias = fit_logistic(features, labels, len(self.classes), self.weight_decay)
        self.linear.weight.copy_(weight)
        self.linear.bias.copy_(bias)
        return {"weight_decay": self.weight_decay, "val_accuracy": scores.get(self.weight_decay, float("nan"))}
