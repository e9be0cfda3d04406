"""The contract between the training engine and every method that trains something.

Pretraining objectives (clip, siglip, slip, silc), CLIPSelf distillation and the few-shot
adapters are all ``Objective`` subclasses: the engine only moves batches to the device,
calls ``forward`` under autocast, backpropagates ``losses["loss"]``, steps the optimiser over
``param_groups()`` and calls ``after_step``. Nothing else about a method leaks into the loop.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Iterator, Sequence

import torch
from torch import nn

from .data import SampleTransform, stack_collate


@dataclass(frozen=True)
class HeadExport:
    """What a head-training objective exports: ``head`` and the loaded ``Bundle`` it runs on (whose
    name, pretrained tag and weights fingerprint the head file records)."""

    head: nn.Module
    backbone: Any


class Objective(nn.Module):
    """A training method: owns the trainable modules and turns a batch into named losses."""

    name: ClassVar[str] = ""
    #: The Sample fields every run of this method needs (``required_fields`` may add option-dependent ones).
    needs: ClassVar[frozenset[str]] = frozenset()
    #: DDP must tolerate parameters without gradient in a step (e.g. a loss term switched on late).
    ddp_find_unused_parameters: bool = False

    def forward(self, batch: Any) -> dict[str, torch.Tensor]:
        """Return a dict of scalar tensors; ``"loss"`` is what gets backpropagated, the rest is logged."""
        raise TypeError(f"{type(self).__name__} is not a complete Objective: it defines no forward(batch)")

    def named_trainable_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """Parameters the optimiser updates (default: those with requires_grad)."""
        return ((n, p) for n, p in self.named_parameters() if p.requires_grad)

    def exported_model(self) -> nn.Module:
        """The module whose weights are saved as the run's model.safetensors (e.g. the student)."""
        return self

    def exported_head(self) -> HeadExport | None:
        """For a method that trains a head: ``exported_model()`` is that head, saved in the head format
        (``clipdense.heads``) with the backbone it runs on. None (default): the export is a CLIP model."""
        return None

    def export_metadata(self) -> dict[str, str]:
        """Extra safetensors metadata for the exported file (e.g. the input size a dense model is meant for)."""
        return {}

    def after_step(self, step: int) -> None:
        """Hook run after each optimiser step (EMA teachers, centring buffers, clamping)."""

    def prepare(self, bundle: Any, source: Any, data: str | None = None) -> None:
        """Called once by ``run_training`` before the optimiser is built, with the loaded model ``Bundle``, the
        opened training source (its ``reader`` names the data's classes) and ``--data`` as given: objectives that
        train a head read the backbone spec and the class vocabulary here. Default: nothing."""

    def required_fields(self) -> frozenset[str]:
        """The ``Sample`` fields this method trains on (``clipdense.data.sample.FIELDS``); the engine opens
        the reader of ``--data`` that fills them, or stops with one line saying what the data lacks."""
        return self.needs

    def describe_requirement(self) -> str:
        """How error messages name this method (options that change what it needs included)."""
        return self.name

    def sample_transform(self) -> SampleTransform | None:
        """Per-sample ``(sample, generator) -> {name: tensor}`` this method trains on.

        Each method declares its own views (one crop for clip, two for slip, multi-crop for silc);
        the engine's BatchStream applies it with a per-sample seeded generator. None: the method
        is fed ready-made batches by its caller.
        """
        return None

    def collate(self, samples: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Turn transformed samples into one batch (default: stack every key)."""
        return stack_collate(samples)
