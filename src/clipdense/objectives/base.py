"""The contract between the training engine and every method that trains something.

Pretraining objectives (clip, siglip, slip, silc), CLIPSelf distillation, the head objectives (fvit, vild, catseg,
lseg) and the few-shot adapters are all ``Objective`` subclasses, built in one phase: the engine validates the
options, asks the class what the data must carry (``required_fields(options)``), opens the data once, loads the
model and only then constructs the objective with everything it needs — the loaded ``Bundle``, its options and
what the data says of itself (``DataInfo``: classes, thing/stuff, the data's own novel classes).

The engine only moves batches to the device, calls ``forward`` under autocast, backpropagates ``losses["loss"]``,
steps the optimiser over ``named_trainable_parameters()`` and calls ``after_step``. Modules an objective names in
``frozen_modules()`` (a CLIPSelf teacher, the backbone under a head) never enter ``state.pt``: they are rebuilt
from the model spec on resume.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterator, Sequence

import torch
import torch.distributed as dist
from torch import nn

from ..data.readers import DataInfo
from ..data.sample import Sample
from ..errors import ConfigError
from .locking import lock_image_blocks, lock_text_blocks

SampleTransform = Callable[[Sample, torch.Generator], dict[str, torch.Tensor]]


def stack_collate(samples: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack each key of the per-sample dicts into a batch tensor."""
    return {key: torch.stack([s[key] for s in samples]) for key in samples[0]}


def rank_and_world() -> tuple[int, int]:
    """(rank, world_size) of the current process group, (0, 1) without one; losses that gather across ranks call
    this per step (as open_clip's losses do), so objectives need nothing of the training engine."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@dataclass(frozen=True)
class HeadExport:
    """What a head-training objective exports: ``head`` and the loaded ``Bundle`` it runs on (whose
    name, pretrained tag and weights fingerprint the head file records)."""

    head: nn.Module
    backbone: Any


class Objective(nn.Module):
    """A training method: owns the trainable modules and turns a batch into named losses.

    Subclasses set ``name`` and ``Options`` (a dataclass: the ``--objective-arg`` keys) and are constructed as
    ``cls(bundle, options, info, total_steps)`` by ``objectives.build_objective``.
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type] = type(None)
    #: The Sample fields every run of this method needs (``required_fields`` may add option-dependent ones).
    needs: ClassVar[frozenset[str]] = frozenset()
    #: logged scalars of ``forward`` shown in the progress line beside the loss (those that warn of a failing run)
    progress_keys: ClassVar[tuple[str, ...]] = ()
    #: DDP must tolerate parameters without gradient in a step (e.g. a loss term switched on late).
    ddp_find_unused_parameters: bool = False

    @classmethod
    def required_fields(cls, options: Any) -> frozenset[str]:
        """The ``Sample`` fields a run with ``options`` trains on (``clipdense.data.sample.FIELDS``); the engine
        opens the reader of ``--data`` that fills them, or stops with one line saying what the data lacks."""
        return cls.needs

    @classmethod
    def describe_requirement(cls, options: Any) -> str:
        """How error messages name this method (options that change what it needs included)."""
        return cls.name

    def forward(self, batch: Any) -> dict[str, torch.Tensor]:
        """Return a dict of scalar tensors; ``"loss"`` is what gets backpropagated, the rest is logged."""
        raise TypeError(f"{type(self).__name__} is not a complete Objective: it defines no forward(batch)")

    def named_trainable_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """Parameters the optimiser updates (default: those with requires_grad)."""
        return ((n, p) for n, p in self.named_parameters() if p.requires_grad)

    def frozen_modules(self) -> Sequence[nn.Module]:
        """Submodules that never change during the run and are rebuilt from the model spec on resume (a frozen
        teacher, the backbone under a head): left out of ``state.pt``."""
        return ()

    def lock_blocks(self, image_blocks: int, text_blocks: int) -> None:
        """Freeze the first blocks of the CLIP this method trains (``--lock-image-blocks`` /
        ``--lock-text-blocks``). Default: a method that trains no CLIP refuses a non-zero count."""
        if image_blocks or text_blocks:
            flag = "--lock-image-blocks" if image_blocks else "--lock-text-blocks"
            raise ConfigError(f"{flag}: objective {self.name!r} trains no CLIP tower (its backbone is frozen "
                              "already); leave it at 0")

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


#: a parameter attribute: the factor on the run's learning rate for this parameter (CLIP4Clip's ``coef_lr``)
LR_SCALE = "clipdense_lr_scale"


def scale_lr(module: nn.Module, factor: float) -> None:
    """Train ``module``'s parameters at ``factor`` times the run's learning rate (the optimiser puts them in their
    own groups; the factor applies through warm-up and decay alike)."""
    for param in module.parameters():
        setattr(param, LR_SCALE, float(factor))


class ClipTraining(Objective):
    """An objective that trains (part of) the CLIP itself — its ``exported_model()`` — so the first blocks of its
    towers can be locked."""

    def lock_blocks(self, image_blocks: int, text_blocks: int) -> None:
        lock_image_blocks(self.exported_model(), image_blocks)
        lock_text_blocks(self.exported_model(), text_blocks)


__all__ = ["LR_SCALE", "ClipTraining", "DataInfo", "HeadExport", "Objective", "SampleTransform", "rank_and_world",
           "scale_lr", "stack_collate"]
