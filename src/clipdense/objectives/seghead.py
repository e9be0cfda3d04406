"""What the segmentation-head objectives (catseg, lseg) share: the training vocabulary, the seeded
scale-jitter transform that moves label maps with the pixels, and the step from a batch to a loss.

Which classes train ("seen"): ``classes`` (default: every class of ``--data``) minus the world's novel things
when ``--data`` is a world (they never appear in its train scenes) minus ``exclude``. Pixels of any other class
are ignored, as the zero-shot protocols (COCO-Stuff 156 / 15) ignore unseen classes' pixels; the head's file
records the seen vocabulary, and evaluation reports seen and unseen classes apart.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence

import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from torch import nn

from ..data.sample import Sample
from ..data.transforms import Compose, RandomHFlip, ScaleJitter
from ..errors import ConfigError, DataError
from ..heads.segmentation import SegmentationHead
from ..heads.segmentation.common import config_fields
from .base import DataInfo, HeadExport, Objective
from .views import model_image_stats

IGNORE = -1  # label of pixels that do not train (unlabelled, padding, unseen classes)


@dataclass
class SegTrainingOptions:
    """Training options shared by catseg and lseg (their ``Options`` add the head's architecture fields).

    Args:
        classes: the training vocabulary (default: every class of ``--data``); with data that names no classes,
            the label values index this list.
        exclude: classes held out of training (their pixels are ignored): the protocol's unseen classes.
        jitter: scale jitter range of the training crops (the image's long side times ``image_size``).
        hflip: random horizontal flips.
        classes_per_step: aggregate only this many classes per step, every class present in the batch
            included (0 = all; a CPU economy for large vocabularies, not in the papers).
    """

    classes: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    jitter: list[float] = field(default_factory=lambda: [0.5, 2.0])
    hflip: bool = True
    classes_per_step: int = 0


def training_vocabulary(data_classes: Sequence[str] | None, options: SegTrainingOptions,
                        held_out: Sequence[str] = ()) -> tuple[list[str], torch.Tensor]:
    """(seen class names, lookup) where ``lookup[label]`` is a data label's index among the seen classes
    or ``IGNORE``."""
    named = list(options.classes)
    labels = list(data_classes) if data_classes is not None else named
    if not labels:
        raise DataError("segmentation heads train on data that names its classes (a semseg class file, a world) "
                        "or on --objective-arg classes=a,b,c")
    unknown = [c for c in named + list(options.exclude) if c not in labels]
    if unknown:
        raise ConfigError(f"classes / exclude name {unknown[:3]}, which the data's classes do not "
                          f"({labels[:5]}{'...' if len(labels) > 5 else ''})")
    dropped = set(held_out) | set(options.exclude)
    seen = [c for c in (named or labels) if c not in dropped]
    if not seen:
        raise ConfigError("no class left to train on after classes / exclude")
    lookup = torch.tensor([seen.index(c) if c in seen else IGNORE for c in labels], dtype=torch.long)
    return seen, lookup


@dataclass
class SegTransform:
    """(sample, generator) -> image (3, S, S) normalised, zero-padded bottom-right after scale jitter and an
    optional flip, and label (S, S): the data's class index, ``IGNORE`` where unlabelled or padded."""

    size: int
    jitter: tuple[float, float]
    hflip: bool
    mean: Sequence[float]
    std: Sequence[float]

    def __call__(self, sample: Sample, generator: torch.Generator) -> dict[str, torch.Tensor]:
        ops: list[Any] = ([RandomHFlip(0.5)] if self.hflip else []) + [ScaleJitter(self.size, self.jitter)]
        sample = Compose(ops)(sample, generator)
        pixels = TF.normalize(TF.to_tensor(sample.image), list(self.mean), list(self.std))
        image = torch.zeros(3, self.size, self.size)
        image[:, :pixels.shape[1], :pixels.shape[2]] = pixels
        label = torch.full((self.size, self.size), IGNORE, dtype=torch.long)
        semantic = sample.semantic.long()
        label[:semantic.shape[0], :semantic.shape[1]] = torch.where(semantic == sample.ignore_index, IGNORE, semantic)
        return {"image": image, "label": label}


class SegHeadObjective(Objective):
    """A segmentation head on a frozen backbone (some CLIP tensors tuned through the head); subclasses give
    the head class and the loss."""

    needs: ClassVar[frozenset[str]] = frozenset({"semantic"})
    head_class: ClassVar[type[SegmentationHead]] = SegmentationHead

    def __init__(self, bundle: Any, options: Any = None, info: DataInfo | None = None, total_steps: int = 1) -> None:
        super().__init__()
        self.options = options or self.Options()
        jitter = [float(v) for v in self.options.jitter]
        if len(jitter) != 2 or not 0 < jitter[0] <= jitter[1]:
            raise ConfigError(f"jitter {self.options.jitter}: expected [low, high] with 0 < low <= high")
        if self.options.classes_per_step < 0:
            raise ConfigError(f"classes_per_step must be >= 0, got {self.options.classes_per_step}")
        if self.options.image_size < 0:
            raise ConfigError(f"image_size must be > 0 (0: the backbone's input size), got {self.options.image_size}")
        info = info or DataInfo()
        seen, lookup = training_vocabulary(info.classes, self.options, info.novel)
        model = bundle.model
        model.requires_grad_(False)
        model.eval()
        self.bundle = bundle
        self.backbone = model    # registered, so it moves with the objective; frozen, so never saved
        self.head = self.head_class(model, bundle.tokenizer, self.head_class.Config(**config_fields(
            self.head_class.Config, self.options)))
        self.head.classes = seen
        _, self.mean, self.std = model_image_stats(model)
        self.register_buffer("lookup", lookup, persistent=False)
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.int64))

    # ------------------------------------------------------------------------- engine hooks
    def frozen_modules(self) -> list[nn.Module]:
        """The backbone; the CLIP tensors the head tunes are the head's own (saved with it)."""
        return [self.backbone]

    def sample_transform(self) -> SegTransform:
        jitter = (float(self.options.jitter[0]), float(self.options.jitter[1]))
        return SegTransform(self.head.config.image_size, jitter, bool(self.options.hflip), self.mean, self.std)

    def exported_model(self) -> nn.Module:
        return self.head

    def exported_head(self) -> HeadExport:
        return HeadExport(self.head, self.bundle)

    def train(self, mode: bool = True) -> "SegHeadObjective":
        super().train(mode)
        self.backbone.eval()
        return self

    @torch.no_grad()
    def after_step(self, step: int) -> None:
        self.steps_done += 1

    # ------------------------------------------------------------------------------ a step
    def step_classes(self, labels: torch.Tensor) -> tuple[list[str], torch.Tensor]:
        """The classes of this step and the labels re-indexed into them (all seen classes, or
        ``classes_per_step`` of them: those present, then others drawn by the step's own seed)."""
        seen, limit = self.head.classes, self.options.classes_per_step
        if not limit or limit >= len(seen):
            return seen, labels
        present = torch.unique(labels[labels >= 0]).tolist()
        generator = torch.Generator().manual_seed(int(self.steps_done) * 7919 + 17)
        others = [int(i) for i in torch.randperm(len(seen), generator=generator) if int(i) not in present]
        chosen = present + others[:max(0, limit - len(present))]
        remap = torch.full((len(seen),), IGNORE, dtype=torch.long, device=labels.device)
        remap[torch.tensor(chosen, device=labels.device)] = torch.arange(len(chosen), device=labels.device)
        return [seen[i] for i in chosen], torch.where(labels >= 0, remap[labels.clamp_min(0)], labels)

    def loss(self, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Scalar loss of (B, T, H, W) scores against (B, H, W) labels (``IGNORE`` where none)."""
        raise TypeError(f"{type(self).__name__} defines no loss(scores, labels)")

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        raw = batch["label"]
        labels = torch.where(raw >= 0, self.lookup[raw.clamp(0, len(self.lookup) - 1)], raw)
        names, labels = self.step_classes(labels)
        scores = self.head(batch["image"], self.head.text_features(names))
        scores = F.interpolate(scores.float(), size=labels.shape[-2:], mode="bilinear", align_corners=False)
        valid = labels >= 0
        loss = self.loss(scores, labels)
        accuracy = ((scores.argmax(1) == labels) & valid).sum() / valid.sum().clamp_min(1)
        return {"loss": loss, "pixel_acc": accuracy.detach(), "classes": torch.tensor(float(len(names)))}
