"""PointCLIP's few-shot protocol on a ModelNet split: K shapes per class (seeded), the inter-view adapter trained
on them by the engine (objective ``pointclip-adapter``), accuracy on the test split.

    reader = ModelNetPoints(root, "train")
    adapter, info = fit_point_adapter(bundle, reader, shots=16, seed=0)
    accuracy = point_accuracy(adapter, ModelNetPoints(root, "test"))
"""
from __future__ import annotations

import os
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from ..data.formats.modelnet import ModelNetPoints
from ..data.streams import IndexedSource
from ..errors import ConfigError
from ..heads.io import load_head
from ..heads.pointclip import InterViewAdapter
from ..models.pointviews import PointViewSettings, encode_point_views
from ..train.config import TrainConfig
from ..train.run import run_training


@dataclass
class PointAdaptConfig:
    """One few-shot fit: ``shots`` per class, the engine's steps / lr / batch, the adapter's options
    (``InterViewAdapterConfig`` fields and ``num_points``)."""

    shots: int = 16
    seed: int = 0
    steps: int = 100
    lr: float = 1e-3
    batch_size: int = 32
    options: dict[str, Any] = field(default_factory=dict)


def sample_point_shots(reader: ModelNetPoints, shots: int, seed: int) -> list[int]:
    """``shots`` indices per class (all of a class that has fewer), drawn by ``seed``, in class order."""
    if shots < 1:
        raise ConfigError(f"shots {shots}: expected >= 1")
    rng, chosen = random.Random(seed), []
    for label in range(len(reader.classes)):
        members = [i for i, lab in enumerate(reader.labels) if lab == label]
        chosen += sorted(rng.sample(members, min(shots, len(members))))
    return chosen


def fit_point_adapter(bundle: Any, reader: ModelNetPoints, config: PointAdaptConfig,
                      run_dir: str | os.PathLike | None = None) -> tuple[InterViewAdapter, dict[str, Any]]:
    """Train the adapter on the K-shot subset through ``run_training``; (the head of the last checkpoint, what
    the run reported)."""
    shots = sample_point_shots(reader, config.shots, config.seed)
    device = next(bundle.model.parameters()).device
    with tempfile.TemporaryDirectory(prefix="clipdense-pointclip-") as scratch:
        out = Path(run_dir) if run_dir else Path(scratch) / "run"
        train = TrainConfig(objective="pointclip-adapter", model=bundle.name, pretrained=bundle.pretrained,
                            out=str(out), steps=config.steps, batch_size=min(config.batch_size, len(shots)),
                            lr=config.lr, warmup_steps=min(10, config.steps - 1), checkpoint_every=config.steps,
                            keep_checkpoints=1, log_every=max(1, config.steps // 5), seed=config.seed,
                            device=str(device), num_workers=0, objective_args=dict(config.options))
        source = IndexedSource(reader, config.seed, keep=shots, what=f"the shots of {reader.root}")
        result = run_training(train, source=source, bundle=bundle)
        adapter = load_head(out, bundle)
    info = {"shots": config.shots, "seed": config.seed, "train_shapes": len(shots),
            **{f"train_{k}": v for k, v in result.last_losses.items()}}
    return adapter, info


@torch.no_grad()
def point_features(bundle: Any, reader: ModelNetPoints, settings: PointViewSettings,
                   indices: Sequence[int] | None = None, batch_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, M, D) view features and (N,) labels of the reader's shapes (all, or ``indices``)."""
    indices = list(range(len(reader))) if indices is None else list(indices)
    features, labels = [], []
    for start in range(0, len(indices), batch_size):
        samples = [reader[i] for i in indices[start:start + batch_size]]
        n = min(s.points.shape[0] for s in samples)
        features.append(encode_point_views(bundle, torch.stack([s.points[:n] for s in samples]), settings).cpu())
        labels += [s.image_label for s in samples]
    return torch.cat(features), torch.tensor(labels)


@torch.no_grad()
def point_accuracy(adapter: InterViewAdapter, reader: ModelNetPoints) -> float:
    """Top-1 accuracy (%) of a trained adapter on every shape of ``reader`` (classes in the adapter's order)."""
    if list(reader.classes) != list(adapter.classes):
        raise ConfigError(f"{reader.root}: classes {reader.classes[:3]}... differ from the adapter's "
                          f"{adapter.classes[:3]}...")
    settings = PointViewSettings(projection=adapter.config.projection, views=adapter.config.views)
    features, labels = point_features(adapter.bundle, reader, settings)
    return float((adapter.eval().logits(features).argmax(-1).cpu() == labels).float().mean() * 100)
