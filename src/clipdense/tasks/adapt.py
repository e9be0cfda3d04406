"""From an ImageFolder to a fitted adapter, and the protocol's evaluations (accuracy, base-to-novel).

Trained methods go through ``clipdense.train.Trainer`` (the one engine) with ``FewShotObjective``;
the linear probe is a closed-form L-BFGS solve and Tip-Adapter is training-free.
"""
from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from ...errors import ConfigError
from ...objectives.fewshot import FewShotObjective
from ...train.config import TrainConfig
from ...train.engine import Trainer
from .base import Adapter
from .linear_probe import LinearProbe
from .methods import ADAPTERS, build_adapter
from .protocol import (LabelledImages, ShuffledBatches, accuracy, base_novel_split, batched, frozen_features,
                       harmonic_mean, load_pixels, read_image_folder, restrict_classes, sample_few_shot)
from .tip_adapter import TipAdapter


@dataclass
class AdaptConfig:
    """How to fit one method (the `clipdense adapt` flags). Defaults suit the CPU tiny models."""

    method: str = "coop"
    shots: int = 16
    seed: int = 0
    steps: int = 200                  # optimiser steps for the trained methods
    lr: float = 2e-3
    batch_size: int = 32
    weight_decay: float = 0.0
    warmup_steps: int = 10
    val_shots: int = 4                # held-out images per class for alpha/beta and probe strength
    options: dict[str, Any] = field(default_factory=dict)   # the method's own options (n_ctx, ratio ...)

    def validate(self) -> None:
        if self.method not in ADAPTERS:
            raise ConfigError(f"unknown method {self.method!r}; choose one of {sorted(ADAPTERS)}")
        if self.shots < 1 or self.steps < 1 or self.batch_size < 1 or self.val_shots < 0:
            raise ConfigError(f"shots, steps, batch_size must be >= 1 and val_shots >= 0, got "
                              f"{self.shots}, {self.steps}, {self.batch_size}, {self.val_shots}")


@dataclass
class AdaptResult:
    """A fitted adapter and what happened while fitting it."""

    adapter: Adapter
    info: dict[str, Any]


def held_out(data: LabelledImages, shots: LabelledImages, val_shots: int, seed: int) -> LabelledImages | None:
    """Up to ``val_shots`` per class not among the training shots; None when a class has none left."""
    if val_shots == 0:
        return None
    used = set(shots.paths)
    left = min(sum(1 for p, lab in zip(data.paths, data.labels) if lab == c and p not in used)
               for c in range(len(data.classes)))
    if left == 0:
        return None
    return sample_few_shot(data, min(val_shots, left), seed + 1, exclude=shots.paths)


def train_adapter(adapter: Adapter, batches: ShuffledBatches, config: AdaptConfig,
                  run_dir: str | os.PathLike | None = None) -> dict[str, float]:
    """Run the engine on ``FewShotObjective(adapter)``; checkpoints go to ``run_dir`` (temporary if None)."""
    train = TrainConfig(objective=FewShotObjective.name, model=adapter.bundle.name, steps=config.steps,
                        batch_size=batches.batch_size, lr=config.lr, warmup_steps=min(config.warmup_steps,
                        config.steps - 1), weight_decay=config.weight_decay, checkpoint_every=config.steps,
                        keep_checkpoints=1, log_every=max(1, config.steps // 10), seed=config.seed)
    train.validate()
    objective = FewShotObjective(adapter, adapter.classes)
    with tempfile.TemporaryDirectory(prefix="clipdense-adapt-") as scratch:
        trainer = Trainer(train, objective, batches, Path(run_dir or scratch), adapter.bundle.name,
                          device=adapter.device)
        result = trainer.fit()
    adapter.eval()
    return {f"train_{k}": v for k, v in result.last_losses.items()}


def fit(bundle: Any, data: str | os.PathLike | LabelledImages, config: AdaptConfig,
        run_dir: str | os.PathLike | None = None) -> AdaptResult:
    """Sample K shots per class (seeded), fit ``config.method`` and tune it on held-out shots."""
    config.validate()
    data = data if isinstance(data, LabelledImages) else read_image_folder(data)
    shots = sample_few_shot(data, config.shots, config.seed)
    val = held_out(data, shots, config.val_shots, config.seed)
    torch.manual_seed(config.seed)
    options = dict(config.options)
    if issubclass(ADAPTERS[config.method], TipAdapter):
        options["cache_size"] = len(shots)
    adapter = build_adapter(config.method, bundle, data.classes, options)
    start = time.process_time()
    pixels = load_pixels(bundle.preprocess, shots.paths)
    labels = torch.tensor(shots.labels)
    features = frozen_features(bundle.model, pixels)
    info: dict[str, Any] = {"method": config.method, "shots": config.shots, "seed": config.seed,
                            "classes": len(data.classes), "train_images": len(shots)}
    val_features = frozen_features(bundle.model, load_pixels(bundle.preprocess, val.paths)) if val else None
    val_labels = torch.tensor(val.labels) if val else None
    if isinstance(adapter, LinearProbe):
        info.update(adapter.fit(features, labels, val_features, val_labels))
    if isinstance(adapter, TipAdapter):
        adapter.fill_cache(features, labels)
    if adapter.trained:
        inputs, key = (pixels, "pixels") if adapter.needs_pixels else (features, "features")
        batches = ShuffledBatches(inputs, labels, config.batch_size, seed=config.seed, key=key)
        info.update(train_adapter(adapter, batches, config, run_dir))
    if isinstance(adapter, TipAdapter) and val_features is not None:
        info.update(adapter.search(val_features, val_labels))
    info["cpu_seconds"] = round(time.process_time() - start, 2)
    return AdaptResult(adapter.eval(), info)


@torch.no_grad()
def evaluate(adapter: Adapter, data: LabelledImages, classnames: Sequence[str] | None = None,
             batch_size: int = 64) -> float:
    """Top-1 accuracy (%) of ``adapter`` on ``data`` over ``classnames`` (default: data's classes)."""
    names = list(classnames or data.classes)
    pixels = load_pixels(adapter.bundle.preprocess, data.paths)
    features = batched(adapter.encode_images, pixels, batch_size)
    logits = torch.cat([adapter.logits(features[i:i + batch_size], names)
                        for i in range(0, len(features), batch_size)])
    return accuracy(logits, torch.tensor(data.labels))


def base_to_novel(bundle: Any, train: str | os.PathLike, test: str | os.PathLike, config: AdaptConfig,
                  novel: Sequence[str] | None = None) -> dict[str, Any]:
    """CoCoOp's protocol: fit on base classes; base accuracy among base, novel among novel, and their HM.

    Closed-set methods (linear probe) cannot score novel classes: their novel accuracy is None.
    """
    train_data, test_data = read_image_folder(train), read_image_folder(test)
    base, novel_names = base_novel_split(train_data.classes, novel)
    result = fit(bundle, restrict_classes(train_data, base), config)
    base_acc = evaluate(result.adapter, restrict_classes(test_data, base))
    novel_acc = None if result.adapter.closed_set else evaluate(result.adapter, restrict_classes(test_data,
                                                                                                   novel_names))
    hm = None if novel_acc is None else harmonic_mean(base_acc, novel_acc)
    return {**result.info, "base": base_acc, "novel": novel_acc, "hm": hm,
            "base_classes": len(base), "novel_classes": len(novel_names)}
