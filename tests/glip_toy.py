"""Shared by the GLIP tests (issue 26): fit an objective to one fixed batch, and a reader restricted to some indices,
so each test's overfit check reads as its claim."""
from __future__ import annotations

from typing import Any, Sequence

import torch


def fit_batch(objective: Any, batch: dict[str, torch.Tensor], steps: int, lr: float = 3e-3) -> None:
    """``steps`` AdamW steps of ``objective`` on ``batch`` (its trainable parameters only)."""
    optimiser = torch.optim.AdamW([p for _, p in objective.named_trainable_parameters()], lr=lr)
    objective.train()
    for _ in range(steps):
        loss = objective(batch)["loss"]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()


class Subset:
    """The samples of ``reader`` at ``indices``, as a reader."""

    def __init__(self, reader: Any, indices: Sequence[int]) -> None:
        self.reader, self.indices = reader, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Any:
        return self.reader[self.indices[i]]


def small_world(out: Any, train: int, val: int, *, grounding: bool = True, vqa: bool = False) -> Any:
    """A 64 px world of ``train`` / ``val`` scenes at ``out`` with its grounding files (and VQA files)."""
    from clipdense.data import SynthConfig, write_world
    from clipdense.data.world.grounding import write_grounding
    from clipdense.data.world.vqa import write_vqa_world

    write_world(SynthConfig(out=str(out), train=train, val=val, image_size=64, classify_train_per_class=0,
                            classify_val_per_class=0))
    if grounding:
        write_grounding(out)
    if vqa:
        write_vqa_world(out)
    return out
