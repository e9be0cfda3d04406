"""Tip-Adapter and Tip-Adapter-F (Zhang et al., ECCV 2022): a key-value cache of the few-shot set.

``logits = 100 f W^T + alpha * exp(-beta (1 - f K^T)) V``: K are the few-shot image features,
V their one-hot labels. Tip-Adapter is training-free; Tip-Adapter-F fine-tunes the keys. alpha
(how much to trust the cache) and beta (how sharp its affinities are) are searched on validation.
Logits use CLIP's fixed 100x scale as the paper does, so alpha/beta mean what they mean there.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import torch
from torch import nn

from ...errors import ConfigError, DataError
from .base import Adapter, AdapterConfig, accuracy

ZERO_SHOT_SCALE = 100.0
ALPHA_GRID = tuple(float(a) for a in torch.logspace(-1, 2, 16))
BETA_GRID = tuple(float(b) for b in torch.logspace(-0.5, 1.5, 12))


@dataclass
class TipAdapterConfig(AdapterConfig):
    """The cache.

    Args:
        cache_size: number of cached few-shot features (N x K); filled by ``fill_cache``.
        alpha, beta: initial residual ratio and sharpness (paper defaults 1.0 and 5.5; ``search`` tunes them,
            and the tuned values are the file's buffers).
    """

    cache_size: int = 1
    alpha: float = 1.0
    beta: float = 5.5


class TipAdapter(Adapter):
    """Training-free cache model (``Config``: ``TipAdapterConfig``)."""

    method = "tip-adapter"
    Config = TipAdapterConfig
    train_keys: ClassVar[bool] = False

    def __init__(self, bundle: Any, classes: Sequence[str], config: TipAdapterConfig | None = None) -> None:
        super().__init__(bundle, classes, config)
        cache_size, alpha, beta = self.config.cache_size, self.config.alpha, self.config.beta
        if cache_size < 1:
            raise ConfigError(f"{self.method} cache_size must be >= 1, got {cache_size}")
        keys = torch.zeros(cache_size, self.embed_dim(), device=self.device)
        if self.train_keys:
            self.keys = nn.Parameter(keys)
        else:
            self.register_buffer("keys", keys)
        self.register_buffer("cache_labels", torch.zeros(cache_size, dtype=torch.long, device=self.device))
        self.register_buffer("alpha", torch.tensor(float(alpha), device=self.device))
        self.register_buffer("beta", torch.tensor(float(beta), device=self.device))

    @torch.no_grad()
    def fill_cache(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Cache the (N*K, D) unit-norm few-shot features and their labels."""
        if features.shape != self.keys.shape:
            raise DataError(f"cache expects {tuple(self.keys.shape)} features, got {tuple(features.shape)}")
        self.keys.copy_(features.to(self.device))
        self.cache_labels.copy_(labels.to(self.device))

    def _parts(self, features: torch.Tensor, names: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(zero-shot logits, cache affinities (B, N*K), cache values (N*K, C)) for ``names``."""
        features = features.to(self.device)
        zero_shot = ZERO_SHOT_SCALE * features @ self.zero_shot_weights(names).T
        columns = self.trained_columns(names)
        values = (self.cache_labels[:, None] == columns[None]).float()   # classes never trained on: 0
        return zero_shot, features @ self.keys.T, values

    def logits(self, features: torch.Tensor, classnames: Sequence[str] | None = None) -> torch.Tensor:
        names = self.resolve_classes(classnames)
        zero_shot, affinity, values = self._parts(features, names)
        return zero_shot + self.alpha * torch.exp(-self.beta * (1 - affinity)) @ values

    @torch.no_grad()
    def search(self, features: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        """Grid-search alpha and beta for accuracy on held-out few-shot features (sets them)."""
        zero_shot, affinity, values = self._parts(features, self.classes)
        labels = labels.to(self.device)
        best = (-1.0, float(self.alpha), float(self.beta))
        for alpha, beta in itertools.product(ALPHA_GRID, BETA_GRID):
            acc = accuracy(zero_shot + alpha * torch.exp(-beta * (1 - affinity)) @ values, labels)
            if acc > best[0]:
                best = (acc, alpha, beta)
        self.alpha.fill_(best[1])
        self.beta.fill_(best[2])
        return {"val_accuracy": best[0], "alpha": best[1], "beta": best[2]}


class TipAdapterF(TipAdapter):
    """Tip-Adapter with the cache keys fine-tuned (the values stay the few-shot labels)."""

    method = "tip-adapter-f"
    train_keys = True
    trained = True
