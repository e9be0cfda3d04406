"""F-ViT: an open-vocabulary detector trained on a frozen CLIP ViT (CLIPSelf's ``F-ViT/``, Wu et al. 2024).

``clipdense train --objective fvit --model SPEC --pretrained ... --data COCO_OR_WORLD``: the backbone stays frozen,
the pyramid, RPN and RoI head train on the base classes' boxes only (novel columns are masked out of the loss,
their boxes never reach the targets), the background counts ``background_weight`` (0.2). The run exports a head
(``detector/fvit``) bound to the backbone's fingerprint. ``vild.py`` builds ViLD on the same pieces.

Which classes are base and which novel: ``split=ov-coco`` (the shipped 48 / 17 lists), else a world's own split
(world.json: novel things never appear in its train scenes), else every thing class of the data is base; ``novel``
adds names. Classes of neither kind (OV-COCO's other 15, stuff) take no part.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence

import torch
import torchvision.transforms.functional as TF
from torch import nn

from ..data.formats.ovcoco import detection_split
from ..data.sample import Sample
from ..data.transforms import Compose, RandomHFlip, ScaleJitter, keep_boxes
from ..errors import ConfigError, DataError
from ..heads.detection import DetectorConfig, FViTDetector
from ..heads.detection.detector import Detector
from .base import DataInfo, HeadExport, Objective, stack_collate


@dataclass
class DetectionOptions(DetectorConfig):
    """Options of the detector objectives (``--objective-arg KEY=VALUE``): the head's architecture and test-time
    behaviour are ``DetectorConfig``'s fields (F-ViT's recipe by default; ``novel`` adds novel class names never
    trained on), plus the training ones below."""

    split: str = ""                 # "" = the data's own (a world's base/novel), or a shipped split: ov-coco
    jitter: list[float] = field(default_factory=lambda: [0.1, 2.0])   # scale jitter range (large-scale jitter)
    hflip: bool = True
    max_boxes: int = 100            # boxes kept per image (the rest dropped)
    background_weight: float = 0.2


def detector_config(options: DetectorConfig, novel: Sequence[str]) -> DetectorConfig:
    """The head's ``DetectorConfig`` out of the objective's options, with the vocabulary's novel classes."""
    names = {f.name for f in dataclasses.fields(DetectorConfig)}
    return DetectorConfig(**{**{k: v for k, v in vars(options).items() if k in names}, "novel": list(novel)})


@dataclass
class Vocabulary:
    """The classifier's columns (base then novel, in the data's order) and which reader labels train.

    ``columns[label]`` = 1 + column for a base class of the reader, 0 for any label that never trains.
    """

    names: list[str]
    base: list[str]
    novel: list[str]
    columns: torch.Tensor

    @property
    def trained(self) -> torch.Tensor:
        return torch.tensor([n in set(self.base) for n in self.names], dtype=torch.bool)


def data_vocabulary(classes: Sequence[str], isthing: Sequence[bool], split: str, novel: Sequence[str],
                    data_novel: Sequence[str] = ()) -> Vocabulary:
    """Base / novel classes among the data's thing classes (see the module docstring)."""
    things = [c for c, t in zip(classes, isthing) if t]
    if split:
        chosen = detection_split(split)
        base = [c for c in things if c in chosen.base and c not in novel]
        novel_names = [c for c in things if c in chosen.novel or c in novel]
    else:
        held = set(data_novel) | set(novel)
        base = [c for c in things if c not in held]
        novel_names = [c for c in things if c in held]
    if not base:
        raise DataError(f"split {split or 'of the data'}: no base class among the data's thing classes "
                        f"{things[:5]}{'...' if len(things) > 5 else ''}")
    names = base + novel_names
    columns = torch.tensor([1 + names.index(c) if c in base else 0 for c in classes], dtype=torch.long)
    return Vocabulary(names, base, novel_names, columns)


@dataclass
class DetectionTransform:
    """(sample, generator) -> image (3, S, S) in [0, 1] padded bottom-right, size (2,), boxes (max_boxes, 4) and
    labels (max_boxes,) = 1 + classifier column, -1 padding. Only base-class boxes survive; flip and large-scale
    jitter move them with the pixels."""

    options: Any
    image_size: int
    vocabulary: Vocabulary

    def geometry(self) -> Compose:
        ops: list[Any] = [RandomHFlip(0.5)] if self.options.hflip else []
        return Compose(ops + [ScaleJitter(self.image_size, tuple(self.options.jitter))])

    def trained_only(self, sample: Sample) -> Sample:
        """Labels as 1 + column; boxes of classes that never train (novel, stuff, unused) dropped. Instance masks
        stay (moved by the geometry) only for a head with a mask branch."""
        columns = self.vocabulary.columns
        labels = columns[sample.labels] if sample.labels is not None and len(sample.labels) else \
            torch.zeros(0, dtype=torch.long)
        boxes = sample.boxes.reshape(-1, 4).float() if sample.boxes is not None else torch.zeros(0, 4)
        masks = sample.masks if self.options.mask_head else None
        kept = sample.replace(boxes=boxes, labels=labels, masks=masks, semantic=None)
        return keep_boxes(kept, labels > 0)

    def pack(self, sample: Sample) -> dict[str, torch.Tensor]:
        size, capacity = self.image_size, self.options.max_boxes
        image = torch.zeros(3, size, size)
        pixels = TF.to_tensor(sample.image)
        image[:, :pixels.shape[1], :pixels.shape[2]] = pixels
        boxes, labels = torch.zeros(capacity, 4), torch.full((capacity,), -1, dtype=torch.long)
        count = min(len(sample.boxes), capacity)
        boxes[:count], labels[:count] = sample.boxes[:count], sample.labels[:count]
        out = {"image": image, "size": torch.tensor(pixels.shape[1:]), "boxes": boxes, "labels": labels}
        if self.options.mask_head:   # (count, S, S): as many as boxes, so the batch keeps them as a list
            masks = torch.zeros(count, size, size, dtype=torch.bool)
            masks[:, :pixels.shape[1], :pixels.shape[2]] = sample.masks[:count]
            out["masks"] = masks
        return out

    def __call__(self, sample: Sample, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return self.pack(self.geometry()(self.trained_only(sample), generator))


def batch_targets(batch: dict[str, torch.Tensor]) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """The padded batch as torchvision wants it: image list (each at its own size) and target dicts."""
    sizes = batch["size"].tolist()
    images = [image[:, :h, :w] for image, (h, w) in zip(batch["image"], sizes)]
    targets = [{"boxes": boxes[labels > 0], "labels": labels[labels > 0]}
               for boxes, labels in zip(batch["boxes"], batch["labels"])]
    for target, labels, masks, (h, w) in zip(targets, batch["labels"], batch.get("masks", ()), sizes):
        target["masks"] = masks[labels[: len(masks)] > 0][:, :h, :w]
    return images, targets


def detection_collate(samples: Sequence[dict[str, torch.Tensor]]) -> dict[str, Any]:
    """``stack_collate``, except instance masks (one (n_i, S, S) tensor per image) stay a list."""
    masks = [s["masks"] for s in samples] if "masks" in samples[0] else None
    batch: dict[str, Any] = stack_collate([{k: v for k, v in s.items() if k != "masks"} for s in samples])
    if masks is not None:
        batch["masks"] = masks
    return batch


class DetectionObjective(Objective):
    """Shared by F-ViT and ViLD: a frozen CLIP, a detector head, base-class losses; subclasses add theirs."""

    needs: ClassVar[frozenset[str]] = frozenset({"boxes", "labels"})
    detector_class: ClassVar[type[Detector]] = Detector

    @classmethod
    def required_fields(cls, options: Any) -> frozenset[str]:
        """Boxes and labels; instance masks too for a head with a mask branch (``mask_head=true``)."""
        return cls.needs | ({"masks"} if getattr(options, "mask_head", False) else set())

    def collate(self, samples: Sequence[dict[str, torch.Tensor]]) -> dict[str, Any]:
        return detection_collate(samples)

    def __init__(self, bundle: Any, options: Any = None, info: DataInfo | None = None, total_steps: int = 1) -> None:
        super().__init__()
        self.options = options or self.Options()
        if len(self.options.jitter) != 2 or not 0 < float(self.options.jitter[0]) <= float(self.options.jitter[1]):
            raise ConfigError(f"jitter {self.options.jitter}: expected [low, high] with 0 < low <= high")
        if self.options.max_boxes < 1 or not 0 <= self.options.background_weight:
            raise ConfigError("max_boxes must be >= 1 and background_weight >= 0")
        info = info or DataInfo()
        if info.classes is None:
            raise DataError("detection training needs data that names its classes (COCO instances, a world)")
        self.vocabulary = data_vocabulary(info.classes, info.thing_flags(), self.options.split, self.options.novel,
                                          info.novel)
        bundle.model.requires_grad_(False)
        bundle.model.eval()
        self.bundle = bundle
        self.backbone = bundle.model    # registered, so it moves with the objective; frozen, so never saved
        self.detector = self.detector_class(bundle, detector_config(self.options, self.vocabulary.novel),
                                            list(self.vocabulary.base))
        self.register_buffer("text", self.detector.text_embeddings(self.vocabulary.names), persistent=False)
        self.register_buffer("trained", self.vocabulary.trained, persistent=False)

    def frozen_modules(self) -> list[nn.Module]:
        return [self.backbone]

    def sample_transform(self) -> DetectionTransform:
        return DetectionTransform(self.options, self.detector.config.image_size, self.vocabulary)

    def exported_model(self) -> nn.Module:
        return self.detector

    def exported_head(self) -> HeadExport:
        return HeadExport(self.detector, self.bundle)

    def train(self, mode: bool = True) -> "DetectionObjective":
        super().train(mode)
        self.backbone.eval()
        return self

    def detection_step(self, batch: dict[str, torch.Tensor]):
        images, targets = batch_targets(batch)
        return self.detector.losses(images, targets, self.text, self.trained, self.options.background_weight)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        losses = self.detection_step(batch).losses
        return {"loss": sum(losses.values()), **{k: v.detach() for k, v in losses.items()},
                "temperature": self.detector.logit_scale.detach().exp()}


class FViTObjective(DetectionObjective):
    """F-ViT detector on a frozen CLIP ViT: base boxes only, ensembled with the CLIP's own region score."""

    name: ClassVar[str] = "fvit"
    Options: ClassVar[type] = DetectionOptions
    detector_class: ClassVar[type[Detector]] = FViTDetector
