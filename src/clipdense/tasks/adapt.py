"""From an ImageFolder to a fitted few-shot adapter, and the protocol's evaluations (accuracy, base-to-novel).

The trained methods (CoOp, CoCoOp, MaPLe, CLIP-Adapter, Tip-Adapter-F) run ``train.run_training`` with their
registered objective on the k-shot subset, like any head: checkpoints, resume and the run lock are the engine's.
The linear probe is a closed-form L-BFGS solve and Tip-Adapter is training-free (Tip-Adapter-F starts from it).
"""
from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from ..data.formats.folders import ImageFolderDataset
from ..errors import ConfigError
from ..heads.adapters import (ADAPTERS, METHODS, Adapter, LinearProbe, TipAdapter, accuracy, build_adapter,
                              load_adapter, save_adapter)
from ..train.config import TrainConfig
from ..train.run import run_training
from .adapt_protocol import (base_novel_split, encode_images, harmonic_mean, labels_of, open_image_folder,
                             sample_few_shot, shots_source)

Folder = str | os.PathLike | ImageFolderDataset


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
    options: dict[str, Any] = field(default_factory=dict)   # the method's Config fields (n_ctx, ratio ...)

    def validate(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"unknown method {self.method!r}; choose one of {sorted(METHODS)}")
        if self.shots < 1 or self.steps < 1 or self.batch_size < 1 or self.val_shots < 0:
            raise ConfigError(f"shots, steps, batch_size must be >= 1 and val_shots >= 0, got "
                              f"{self.shots}, {self.steps}, {self.batch_size}, {self.val_shots}")


@dataclass
class AdaptResult:
    """A fitted adapter and what happened while fitting it."""

    adapter: Adapter
    info: dict[str, Any]


def held_out(reader: ImageFolderDataset, shots: Sequence[int], classes: Sequence[str], val_shots: int,
             seed: int) -> list[int]:
    """Up to ``val_shots`` per class not among the training shots; none when some class has none left."""
    if val_shots == 0:
        return []
    used, labels = set(shots), labels_of(reader)
    left = min(sum(1 for i, lab in enumerate(labels) if lab == reader.classes.index(c) and i not in used)
               for c in classes)
    return sample_few_shot(reader, min(val_shots, left), seed + 1, shots, classes) if left else []


def vocabulary_labels(reader: ImageFolderDataset, indices: Sequence[int], classes: Sequence[str]) -> torch.Tensor:
    """The labels of ``indices`` as indices into ``classes``."""
    labels = labels_of(reader)
    return torch.tensor([list(classes).index(reader.classes[labels[i]]) for i in indices])


def train_adapter(bundle: Any, reader: ImageFolderDataset, shots: Sequence[int], config: AdaptConfig,
                  options: dict[str, Any], run_dir: str | os.PathLike) -> tuple[Adapter, dict[str, float]]:
    """Run the engine on objective ``config.method`` over the shots; the head of the run's last checkpoint."""
    device = next(bundle.model.parameters()).device
    train = TrainConfig(objective=config.method, model=bundle.name, pretrained=bundle.pretrained, out=str(run_dir),
                        steps=config.steps, batch_size=min(config.batch_size, len(shots)), lr=config.lr,
                        warmup_steps=min(config.warmup_steps, config.steps - 1), weight_decay=config.weight_decay,
                        checkpoint_every=config.steps, keep_checkpoints=1, log_every=max(1, config.steps // 10),
                        seed=config.seed, device=str(device), num_workers=0, objective_args=options)
    result = run_training(train, source=shots_source(reader, shots, config.seed), bundle=bundle)
    return load_adapter(run_dir, bundle), {f"train_{k}": v for k, v in result.last_losses.items()}


def fit(bundle: Any, data: Folder, config: AdaptConfig, run_dir: str | os.PathLike | None = None,
        classes: Sequence[str] | None = None) -> AdaptResult:
    """Sample K shots per class (seeded) of ``classes`` (default all), fit ``config.method``, tune on held-out shots.

    ``run_dir``: where a trained method's run goes (a temporary folder if None).
    """
    config.validate()
    reader = open_image_folder(data)
    vocabulary = list(classes or reader.classes)
    shots = sample_few_shot(reader, config.shots, config.seed, classes=vocabulary)
    val = held_out(reader, shots, vocabulary, config.val_shots, config.seed)
    start = time.process_time()
    info: dict[str, Any] = {"method": config.method, "shots": config.shots, "seed": config.seed,
                            "classes": len(vocabulary), "train_images": len(shots)}
    with tempfile.TemporaryDirectory(prefix="clipdense-adapt-") as scratch:
        adapter, fitted = _fit_method(bundle, reader, vocabulary, shots, val, config,
                                      Path(run_dir) if run_dir else Path(scratch) / "run", Path(scratch))
    info.update(fitted)
    info["cpu_seconds"] = round(time.process_time() - start, 2)
    return AdaptResult(adapter.eval(), info)


def _fit_method(bundle: Any, reader: ImageFolderDataset, vocabulary: list[str], shots: list[int], val: list[int],
                config: AdaptConfig, run_dir: Path, scratch: Path) -> tuple[Adapter, dict[str, Any]]:
    """The fitted adapter of one method (closed form, training-free, or trained on the engine) and what its
    fitting reports."""
    method, options = config.method, dict(config.options)
    if ADAPTERS[method].trained and not issubclass(ADAPTERS[method], TipAdapter):
        return train_adapter(bundle, reader, shots, config, {**options, "classes": vocabulary}, run_dir)
    encode = lambda pixels: bundle_features(bundle, pixels)   # noqa: E731
    features = encode_images(encode, bundle.preprocess, reader, shots)
    labels = vocabulary_labels(reader, shots, vocabulary)
    val_features = encode_images(encode, bundle.preprocess, reader, val) if val else None
    val_labels = vocabulary_labels(reader, val, vocabulary) if val else None
    torch.manual_seed(config.seed)
    if method == LinearProbe.method:
        probe = build_adapter(method, bundle, vocabulary, options)
        return probe, probe.fit(features, labels, val_features, val_labels)
    adapter = build_adapter(TipAdapter.method, bundle, vocabulary, {**options, "cache_size": len(shots)})
    adapter.fill_cache(features, labels)
    fitted: dict[str, Any] = {}
    if method != TipAdapter.method:          # tip-adapter-f: the engine fine-tunes the cache's keys
        cache = save_adapter(adapter, scratch / "tip-adapter-cache.safetensors")
        adapter, fitted = train_adapter(bundle, reader, shots, config, {"cache": str(cache)}, run_dir)
    if val_features is not None:
        fitted.update(adapter.search(val_features, val_labels))
    return adapter, fitted


def bundle_features(bundle: Any, pixels: torch.Tensor) -> torch.Tensor:
    """(B, D) unit-norm image embeddings of the frozen model."""
    device = next(bundle.model.parameters()).device
    return torch.nn.functional.normalize(bundle.model.encode_image(pixels.to(device)).float(), dim=-1)


@torch.no_grad()
def evaluate(adapter: Adapter, data: Folder, classnames: Sequence[str] | None = None, batch_size: int = 64) -> float:
    """Top-1 accuracy (%) of ``adapter`` on the images of ``classnames`` (default: all the folder's classes)."""
    reader = open_image_folder(data)
    names = list(classnames or reader.classes)
    wanted = {reader.classes.index(c) for c in names if c in reader.classes}
    indices = [i for i, label in enumerate(labels_of(reader)) if label in wanted]
    if len(wanted) != len(names):
        raise ConfigError(f"classes {[c for c in names if c not in reader.classes][:3]} are not among "
                          f"{reader.root}'s classes")
    features = encode_images(adapter.encode_images, adapter.bundle.preprocess, reader, indices, batch_size)
    logits = torch.cat([adapter.logits(features[i:i + batch_size], names)
                        for i in range(0, len(features), batch_size)])
    return accuracy(logits, vocabulary_labels(reader, indices, names))


def base_to_novel(bundle: Any, train: Folder, test: Folder, config: AdaptConfig,
                  novel: Sequence[str] | None = None) -> dict[str, Any]:
    """CoCoOp's protocol: fit on base classes; base accuracy among base, novel among novel, and their HM.

    Closed-set methods (linear probe) cannot score novel classes: their novel accuracy is None.
    """
    train_data, test_data = open_image_folder(train), open_image_folder(test)
    base, novel_names = base_novel_split(train_data.classes, novel)
    result = fit(bundle, train_data, config, classes=base)
    base_acc = evaluate(result.adapter, test_data, base)
    novel_acc = None if result.adapter.closed_set else evaluate(result.adapter, test_data, novel_names)
    hm = None if novel_acc is None else harmonic_mean(base_acc, novel_acc)
    return {**result.info, "base": base_acc, "novel": novel_acc, "hm": hm,
            "base_classes": len(base), "novel_classes": len(novel_names)}
