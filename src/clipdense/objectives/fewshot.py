"""The objective of every trained few-shot method: cross-entropy of the adapter's class logits.

The adapter (CoOp prompts, CoCoOp Meta-Net, MaPLe prompts, CLIP-Adapter MLPs, Tip-Adapter-F keys)
is the exported module, saved as a head, so the engine's checkpoints hold exactly what was learned.
Batches carry either frozen image ``features`` (precomputed once: the image tower is frozen) or
``pixels`` (MaPLe, whose prompts change the image tower's output).
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..train.objective import HeadExport, Objective


class FewShotObjective(Objective):
    """Cross-entropy over the training classes.

    Args:
        adapter: module with ``encode_images(pixels)`` and ``logits(features, classnames)``.
        classnames: the training classes, label order.
    """

    name = "fewshot"

    def __init__(self, adapter: nn.Module, classnames: Sequence[str]) -> None:
        super().__init__()
        self.adapter, self.classnames = adapter, list(classnames)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        if "features" in batch:
            features = batch["features"]
        elif "pixels" in batch:
            features = self.adapter.encode_images(batch["pixels"])
        else:
            raise ConfigError(f"few-shot batches need 'features' or 'pixels', got {sorted(batch)}")
        logits = self.adapter.logits(features, self.classnames)
        labels = batch["label"].to(logits.device)
        loss = F.cross_entropy(logits, labels)
        return {"loss": loss, "accuracy": (logits.argmax(-1) == labels).float().mean()}

    def exported_model(self) -> nn.Module:
        return self.adapter

    def exported_head(self) -> HeadExport:
        """Checkpoints save the adapter as a head (kind adapter/<method>) tied to the frozen model."""
        return HeadExport(self.adapter, self.adapter.bundle)
