"""Training the open-vocabulary panoptic mask generator (``heads.segmentation.PanopticHead``, ODISE's role) with
Mask2Former's set criterion (``mask_matching``): ``clipdense train --objective mask2former --data WORLD``.

The data: segments with masks and labels, things and stuff (a world's COCO instances + COCO-Stuff part, COCO
panoptic via ``coco-panoptic:``, or COCO instances + stuff). Which classes train ("seen"): every class of the data
minus the world's novel things (they never appear in its train scenes) minus ``exclude``; segments of other classes
are dropped from the targets. Stuff segments of one class in one image are merged into one target (panoptic
format: one segment per stuff class). The class logits are the head's class embeddings against the seen classes'
frozen text embeddings plus the learnt "no object" embedding. The backbone stays frozen; the run exports a
``segmenter/panoptic`` head bound to its fingerprint, which records the seen classes, which are stuff, and the
held-out ones.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence

import torch
import torchvision.transforms.functional as TF
from torch import nn

from ..data.sample import Sample
from ..data.transforms import Compose, RandomHFlip, ScaleJitter, keep_boxes
from ..errors import ConfigError, DataError
from ..heads.segmentation.panoptic import PanopticConfig, PanopticHead
from .base import DataInfo, HeadExport, Objective
from .mask_matching import MatchWeights, set_loss
from .views import model_image_stats


@dataclass
class Mask2FormerOptions(PanopticConfig):
    """``--objective-arg`` keys: the head's architecture (``PanopticConfig``) and the training ones below.

    Args:
        exclude: classes held out of training besides the data's own novel classes.
        jitter / hflip: scale jitter range (of ``image_size``) and random flips.
        max_segments: target segments kept per image.
        class_weight / mask_weight / dice_weight / void_weight / points / oversample / importance: the set
            criterion (``MatchWeights``; Mask2Former: 2 / 5 / 5 / 0.1 / 12544 / 3 / 0.75).
        deep_supervision: add the loss of every decoder layer's prediction (Mask2Former does).
    """

    exclude: list[str] = field(default_factory=list)
    jitter: list[float] = field(default_factory=lambda: [0.5, 2.0])
    hflip: bool = True
    max_segments: int = 50
    class_weight: float = 2.0
    mask_weight: float = 5.0
    dice_weight: float = 5.0
    void_weight: float = 0.1
    points: int = 12544
    oversample: float = 3.0
    importance: float = 0.75
    deep_supervision: bool = True


def panoptic_vocabulary(info: DataInfo, exclude: Sequence[str]) -> tuple[list[str], list[str], torch.Tensor]:
    """(seen classes, seen stuff classes, lookup) where ``lookup[label]`` is a data label's seen index or -1."""
    if info.classes is None:
        raise DataError("mask2former trains on data that names its classes (COCO panoptic / instances, a world)")
    unknown = [c for c in exclude if c not in info.classes]
    if unknown:
        raise ConfigError(f"exclude names {unknown[:3]}, which the data's classes do not ({list(info.classes)[:5]})")
    held = set(info.novel) | set(exclude)
    flags = info.thing_flags()
    seen = [c for c in info.classes if c not in held]
    if not seen:
        raise ConfigError("mask2former: no class left to train on after the held-out and excluded classes")
    stuff = [c for c, thing in zip(info.classes, flags) if not thing and c in seen]
    lookup = torch.tensor([seen.index(c) if c in seen else -1 for c in info.classes], dtype=torch.long)
    return seen, stuff, lookup


@dataclass
class PanopticTransform:
    """(sample, generator) -> image (3, S, S) normalised, zero-padded bottom-right after flip + scale jitter;
    masks (M, S, S) bool and labels (M,) seen-class indices, -1 padding; stuff of one class merged."""

    size: int
    jitter: tuple[float, float]
    hflip: bool
    mean: Sequence[float]
    std: Sequence[float]
    lookup: torch.Tensor
    isthing: torch.Tensor           # per seen class
    max_segments: int

    def __call__(self, sample: Sample, generator: torch.Generator) -> dict[str, torch.Tensor]:
        labels = self.lookup[sample.labels] if sample.labels is not None and len(sample.labels) else \
            torch.zeros(0, dtype=torch.long)
        boxes = sample.boxes.reshape(-1, 4).float() if sample.boxes is not None else torch.zeros(0, 4)
        sample = keep_boxes(sample.replace(boxes=boxes, labels=labels, semantic=None), labels >= 0)
        ops: list[Any] = ([RandomHFlip(0.5)] if self.hflip else []) + [ScaleJitter(self.size, self.jitter)]
        sample = Compose(ops)(sample, generator)
        pixels = TF.normalize(TF.to_tensor(sample.image), list(self.mean), list(self.std))
        image = torch.zeros(3, self.size, self.size)
        image[:, :pixels.shape[1], :pixels.shape[2]] = pixels
        masks = torch.zeros(self.max_segments, self.size, self.size, dtype=torch.bool)
        out_labels = torch.full((self.max_segments,), -1, dtype=torch.long)
        for index, (label, mask) in enumerate(self.segments(sample)[:self.max_segments]):
            masks[index, :mask.shape[0], :mask.shape[1]] = mask
            out_labels[index] = label
        return {"image": image, "masks": masks, "labels": out_labels}

    def segments(self, sample: Sample) -> list[tuple[int, torch.Tensor]]:
        """(label, mask) per target: each thing, one union per stuff class; empty masks dropped."""
        if sample.masks is None or sample.labels is None:
            return []
        things, stuff = [], {}
        for label, mask in zip(sample.labels.tolist(), sample.masks.bool()):
            if not mask.any():
                continue
            if bool(self.isthing[label]):
                things.append((label, mask))
            else:
                stuff[label] = stuff[label] | mask if label in stuff else mask
        return things + sorted(stuff.items())


class Mask2FormerObjective(Objective):
    """The panoptic mask generator on a frozen CLIP, trained with Mask2Former's set criterion."""

    name: ClassVar[str] = "mask2former"
    Options: ClassVar[type] = Mask2FormerOptions
    needs: ClassVar[frozenset[str]] = frozenset({"boxes", "labels", "masks"})

    def __init__(self, bundle: Any, options: Any = None, info: DataInfo | None = None, total_steps: int = 1) -> None:
        super().__init__()
        self.options = options or self.Options()
        o = self.options
        if len(o.jitter) != 2 or not 0 < float(o.jitter[0]) <= float(o.jitter[1]):
            raise ConfigError(f"jitter {o.jitter}: expected [low, high] with 0 < low <= high")
        if o.max_segments < 1 or o.points < 1 or o.oversample < 1 or not 0 <= o.importance <= 1:
            raise ConfigError("max_segments and points must be >= 1, oversample >= 1, importance in [0, 1]")
        if o.stuff or o.novel:
            raise ConfigError("mask2former: stuff and novel are read off the data (its thing / stuff flags and "
                              "held-out classes); hold classes out with exclude=...")
        seen, stuff, lookup = panoptic_vocabulary(info or DataInfo(), o.exclude)
        info = info or DataInfo()
        held = [c for c in (info.classes or ()) if c not in seen]
        config_names = {f.name for f in dataclasses.fields(PanopticConfig)}
        config = PanopticConfig(**{**{k: v for k, v in vars(o).items() if k in config_names},
                                   "stuff": stuff, "novel": held})
        bundle.model.requires_grad_(False)
        bundle.model.eval()
        self.bundle = bundle
        self.backbone = bundle.model    # registered, so it moves with the objective; frozen, so never saved
        self.head = PanopticHead(bundle, config, seen)
        _, self.mean, self.std = model_image_stats(bundle.model)
        self.weights = MatchWeights(o.class_weight, o.mask_weight, o.dice_weight, o.void_weight, o.points,
                                    o.oversample, o.importance)
        self.register_buffer("lookup", lookup, persistent=False)
        self.register_buffer("text", self.head.text_embeddings(seen), persistent=False)
        self.isthing = torch.tensor([c not in set(stuff) for c in seen], dtype=torch.bool)

    def frozen_modules(self) -> list[nn.Module]:
        return [self.backbone]

    def sample_transform(self) -> PanopticTransform:
        o = self.options
        return PanopticTransform(self.head.config.image_size, (float(o.jitter[0]), float(o.jitter[1])), bool(o.hflip),
                                 self.mean, self.std, self.lookup.cpu(), self.isthing, int(o.max_segments))

    def exported_model(self) -> nn.Module:
        return self.head

    def exported_head(self) -> HeadExport:
        return HeadExport(self.head, self.bundle)

    def train(self, mode: bool = True) -> "Mask2FormerObjective":
        super().train(mode)
        self.backbone.eval()
        return self

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = self.head(batch["image"])
        valid = batch["labels"] >= 0
        labels = [lab[v] for lab, v in zip(batch["labels"], valid)]
        targets = [m[v] for m, v in zip(batch["masks"], valid)]
        predictions = out.predictions if self.options.deep_supervision else out.predictions[-1:]
        total: dict[str, torch.Tensor] = {}
        for prediction in predictions:
            logits = self.head.class_logits(prediction.embedding, self.text)
            for key, value in set_loss(logits, prediction.masks, labels, targets, self.weights).items():
                total[key] = total.get(key, 0) + value
        return {"loss": sum(total.values()), **{k: v.detach() for k, v in total.items()},
                "temperature": self.head.logit_scale.detach().exp()}
