"""The panoptic mask generator learns: trained on four world scenes it segments them back (PQ >= 0.8 with the
head's own score), and the `panoptic` evaluation, `clipdense train --objective mask2former`, `segment --panoptic`
and `eval --tasks panoptic` run end to end (slow)."""
from __future__ import annotations

import json

import pytest
import torch

import clipdense as cd
from clipdense.data.readers import open_data
from clipdense.evaluation.panoptic import PanopticOptions, evaluate_panoptic
from clipdense.objectives import build_objective

ARCH = dict(hidden_dim=64, mask_dim=64, queries=16, decoder_layers=3, heads=4, ffn_dim=128)


class Few:
    """The first ``count`` samples of a reader, with its classes."""

    def __init__(self, reader, count: int) -> None:
        self.reader, self.count = reader, count
        self.classes, self.isthing = reader.classes, reader.isthing

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int):
        return self.reader[index]


@pytest.mark.slow   # 300 training steps
def test_generator_overfits_a_handful_of_scenes(tiny_world) -> None:
    torch.manual_seed(0)
    bundle = cd.load_model("tiny-vit-t8", pretrained="synthworld", device="cpu")
    reader, _, info = open_data(str(tiny_world), {"boxes", "labels", "masks"}, "train")
    few = Few(reader, 4)
    objective = build_objective("mask2former", bundle, {**ARCH, "jitter": [1.0, 1.0], "hflip": False,
                                                        "points": 1024}, info)
    transform = objective.sample_transform()
    batch = objective.collate([transform(few[i], torch.Generator().manual_seed(i)) for i in range(len(few))])
    optimizer = torch.optim.AdamW([p for _, p in objective.named_trainable_parameters()], lr=1e-3)
    for _ in range(300):
        loss = objective(batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    head = objective.head
    head.classes = [c for c in head.classes]
    result = evaluate_panoptic(head, few, PanopticOptions(alpha=0.0, beta=0.0))
    assert result["pq"] >= 80, result
    assert result["miou"] >= 80, result
