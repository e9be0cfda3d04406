"""GLIP: grounding and detection as one task (Li et al. 2022), as a head on a frozen CLIP; ``glipv2`` adds
GLIPv2's inter-image region-word contrastive loss (Zhang et al. 2022) with ``inter_weight``, and with ``data=vqa``
GLIPv2's VQA fine-tuning (``glip_vqa.py``: questions as prompts, an answer classifier on the fused features).

``clipdense train --objective glip --data WORLD_OR_MODULATED_COCO``: every sample is a prompt and boxes tied to its
tokens. ``data=grounding`` (default) reads grounding data (``phrases``: modulated-COCO, Flickr30k Entities, a world
written with ``--grounding``): the prompt is the caption. ``data=detection`` reads detection data (boxes + labels:
COCO, a world) and writes each image's prompt the GLIP way: its classes plus ``negatives`` sampled absent ones,
shuffled, joined by ". " (``data.prompts.detection_phrases``); with a world or ``split`` only base classes are ever
named, so novel classes stay unseen. The backbone (image and text towers) stays frozen; the run exports a head of
kind ``grounder/glip`` bound to the backbone's fingerprint.

No horizontal flip: it would turn "left of" into a lie (MDETR swaps the words instead; the world's captions use
them, so flips are simply left out). Scale jitter moves boxes with the pixels and drops those it cuts away, phrase
indices with them.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torchvision.transforms.functional as TF
from torch import nn

from ..data.phrases import Phrases, positive_map
from ..data.prompts import detection_phrases
from ..data.sample import Sample
from ..data.transforms import Compose, ScaleJitter, keep_boxes
from ..errors import ConfigError, DataError
from ..heads.grounding import GLIPConfig, GLIPHead
from .base import DataInfo, HeadExport, Objective
from .fvit import data_vocabulary
from .glip_vqa import check_vqa_options, vqa_head, vqa_step, vqa_transform

DATA_KINDS = ("grounding", "detection", "vqa")   # vqa: glipv2's VQA fine-tuning (glip_vqa.py)


@dataclass
class GLIPOptions(GLIPConfig):
    """``--objective-arg KEY=VALUE``: the head's architecture (``GLIPConfig``) plus the training ones below."""

    data: str = "grounding"          # grounding (captions with phrases) or detection (class prompts)
    negatives: int = 8               # detection prompts: absent classes added per image
    split: str = ""                  # detection: a shipped base/novel split (ov-coco), else the data's own
    jitter: list[float] = field(default_factory=lambda: [0.8, 1.25])
    max_boxes: int = 50


def glip_config(options: GLIPOptions) -> GLIPConfig:
    """The head's ``GLIPConfig`` out of the objective's options."""
    names = {f.name for f in dataclasses.fields(GLIPConfig)}
    return GLIPConfig(**{k: v for k, v in vars(options).items() if k in names})


@dataclass
class GLIPTransform:
    """(sample, generator) -> image (3, S, S) padded bottom-right, size (2,), prompt ids (L,), boxes (M, 4), valid
    (M,) and positive (M, L): each box's positive-map row. Boxes whose phrase falls past the context are dropped."""

    options: GLIPOptions
    image_size: int
    context: int
    tokenizer: Any
    classes: tuple[str, ...] = ()
    allowed: tuple[int, ...] = ()

    def phrases(self, sample: Sample, generator: torch.Generator) -> Sample:
        """The sample with its ``phrases``: the caption's, or a detection prompt over its (allowed) classes."""
        boxes = sample.boxes.reshape(-1, 4).float() if sample.boxes is not None else torch.zeros(0, 4)
        masks = sample.masks if self.options.mask_head else None   # GLIPv2's masks, where the data has them
        if self.options.data == "grounding":
            return sample.replace(boxes=boxes, labels=None, masks=masks)
        labels = sample.labels if sample.labels is not None else torch.zeros(0, dtype=torch.long)
        kept = keep_boxes(sample.replace(boxes=boxes, masks=masks, phrases=None),
                          torch.tensor([int(c) in set(self.allowed) for c in labels.tolist()], dtype=torch.bool))
        prompt, _ = detection_phrases(self.classes, kept.labels, max(1, self.options.negatives), generator,
                                      self.allowed)
        return kept.replace(labels=None, phrases=prompt)

    def pack(self, sample: Sample) -> dict[str, torch.Tensor]:
        size, capacity, phrases = self.image_size, self.options.max_boxes, sample.phrases
        image = torch.zeros(3, size, size)
        pixels = TF.to_tensor(sample.image)
        image[:, :pixels.shape[1], :pixels.shape[2]] = pixels
        positive = positive_map(self.tokenizer, phrases, self.context)
        usable = positive.sum(1) > 0
        boxes, rows = sample.boxes[usable][:capacity], positive[usable][:capacity]
        out_boxes, valid = torch.zeros(capacity, 4), torch.zeros(capacity, dtype=torch.bool)
        out_rows = torch.zeros(capacity, self.context)
        out_boxes[:len(boxes)], valid[:len(boxes)], out_rows[:len(boxes)] = boxes, True, rows
        ids = self.tokenizer([phrases.text], context_length=self.context)[0]
        out = {"image": image, "size": torch.tensor(pixels.shape[1:]), "ids": ids, "boxes": out_boxes,
               "valid": valid, "positive": out_rows}
        if self.options.mask_head:   # every sample carries the slot; has_masks says whether it is filled
            out["masks"] = torch.zeros(capacity, size, size, dtype=torch.bool)
            out["has_masks"] = torch.tensor(sample.masks is not None)
            if sample.masks is not None:
                masks = sample.masks[usable][:capacity]
                out["masks"][:len(masks), :masks.shape[1], :masks.shape[2]] = masks
        return out

    def __call__(self, sample: Sample, generator: torch.Generator) -> dict[str, torch.Tensor]:
        sample = self.phrases(sample, generator)
        jitter = Compose([ScaleJitter(self.image_size, tuple(self.options.jitter))])
        return self.pack(jitter(sample, generator))


def glip_targets(batch: dict[str, torch.Tensor]) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """The padded batch as the head wants it: images at their own sizes, per-image boxes and positive rows."""
    sizes = batch["size"].tolist()
    images = [image[:, :h, :w] for image, (h, w) in zip(batch["image"], sizes)]
    targets = [{"boxes": boxes[valid], "positive": positive[valid]}
               for boxes, valid, positive in zip(batch["boxes"], batch["valid"], batch["positive"])]
    if "masks" in batch:   # the masks of the images that have them, cut to each image's own size
        for target, masks, valid, has, (h, w) in zip(targets, batch["masks"], batch["valid"], batch["has_masks"],
                                                     sizes):
            if bool(has):
                target["masks"] = masks[valid][:, :h, :w]
    return images, targets


class GLIPObjective(Objective):
    """GLIP head on a frozen CLIP: token-level focal alignment + GIoU + centerness."""

    name: ClassVar[str] = "glip"
    Options: ClassVar[type] = GLIPOptions

    @classmethod
    def required_fields(cls, options: Any) -> frozenset[str]:
        fields = {"boxes", "labels"} if options.data == "detection" else {"boxes", "phrases"}
        return frozenset(fields | ({"masks"} if options.mask_head else set()))   # GLIPv2's masks: from the data

    @classmethod
    def describe_requirement(cls, options: Any) -> str:
        return f"glip with data={options.data}"

    def __init__(self, bundle: Any, options: Any = None, info: DataInfo | None = None, total_steps: int = 1) -> None:
        super().__init__()
        self.options = options or self.Options()
        check_options(self.options)
        info = info or DataInfo()
        classes: tuple[str, ...] = ()
        allowed: tuple[int, ...] = ()
        if self.options.data == "detection":
            if info.classes is None:
                raise DataError("glip with data=detection needs data that names its classes (COCO, a world)")
            vocabulary = data_vocabulary(info.classes, info.thing_flags(), self.options.split, self.options.novel,
                                         info.novel)
            classes = tuple(info.classes)
            allowed = tuple(i for i, c in enumerate(classes) if c in set(vocabulary.base))
        bundle.model.requires_grad_(False)
        bundle.model.eval()
        self.bundle = bundle
        self.backbone = bundle.model
        config = glip_config(self.options)
        if self.options.data == "detection":   # the OV protocol's split travels with the head
            config = dataclasses.replace(config, novel=list(vocabulary.novel))
        self.head = GLIPHead(bundle, config, [classes[i] for i in allowed])
        self.classes, self.allowed = classes, allowed

    def frozen_modules(self) -> list[nn.Module]:
        return [self.backbone]

    def sample_transform(self) -> GLIPTransform:
        c = self.head.config
        return GLIPTransform(self.options, c.image_size, c.context, self.bundle.tokenizer, self.classes, self.allowed)

    def exported_model(self) -> nn.Module:
        return self.head

    def exported_head(self) -> HeadExport:
        return HeadExport(self.head, self.bundle)

    def train(self, mode: bool = True) -> "GLIPObjective":
        super().train(mode)
        self.backbone.eval()
        return self

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        images, targets = glip_targets(batch)
        losses = self.head.losses(images, batch["ids"], targets)
        return {"loss": sum(losses.values()), **{k: v.detach() for k, v in losses.items()},
                "logit_scale": self.head.log_scale.detach().exp()}


@dataclass
class GLIPv2Options(GLIPOptions):
    """GLIP's options plus the weight of GLIPv2's inter-image region-word contrastive loss."""

    inter_weight: float = 1.0
    init: str = ""              # data=vqa: a trained GLIP / GLIPv2 head (run dir or file) to fine-tune from
    max_answers: int = 3129     # data=vqa: answer vocabulary = the most frequent training answers (VQAv2's 3129)


class GLIPv2Objective(GLIPObjective):
    """GLIPv2's localization pre-training on a frozen CLIP: GLIP's losses + the inter-image region-word contrastive
    loss (every region against every prompt of the batch, before fusion; other images' phrases as negatives). The
    head is a GLIP head like ``glip``'s: grounding, detection and evaluation use it unchanged."""

    name: ClassVar[str] = "glipv2"
    Options: ClassVar[type] = GLIPv2Options

    @classmethod
    def required_fields(cls, options: Any) -> frozenset[str]:
        return frozenset({"question"}) if options.data == "vqa" else super().required_fields(options)

    def __init__(self, bundle: Any, options: Any = None, info: DataInfo | None = None, total_steps: int = 1) -> None:
        super().__init__(bundle, options, info, total_steps)
        if self.options.data == "vqa":   # GLIPv2's VQA fine-tuning: the head gains an answer classifier
            self.head = vqa_head(bundle, self.options, info or DataInfo(), glip_config(self.options))
            self.ddp_find_unused_parameters = True   # box and alignment layers get no gradient from questions

    def sample_transform(self) -> Any:
        if self.options.data == "vqa":
            return vqa_transform(self.head, self.bundle.tokenizer, self.options.jitter)
        return super().sample_transform()

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.options.data == "vqa":
            return vqa_step(self.head, batch)
        images, targets = glip_targets(batch)
        losses = self.head.losses(images, batch["ids"], targets, inter_weight=self.options.inter_weight)
        return {"loss": sum(losses.values()), **{k: v.detach() for k, v in losses.items()},
                "logit_scale": self.head.log_scale.detach().exp()}


def check_options(options: GLIPOptions) -> None:
    """One line for an option out of range (before any model is built)."""
    if options.data not in DATA_KINDS:
        raise ConfigError(f"data={options.data!r}: expected one of {', '.join(DATA_KINDS)}")
    if len(options.jitter) != 2 or not 0 < float(options.jitter[0]) <= float(options.jitter[1]):
        raise ConfigError(f"jitter {options.jitter}: expected [low, high] with 0 < low <= high")
    if options.max_boxes < 1 or options.negatives < 0:
        raise ConfigError("max_boxes must be >= 1 and negatives >= 0")
    if isinstance(options, GLIPv2Options) and options.inter_weight < 0:
        raise ConfigError(f"inter_weight {options.inter_weight}: expected a weight >= 0")
    if isinstance(options, GLIPv2Options):
        check_vqa_options(options)
    elif options.data == "vqa":
        raise ConfigError("data=vqa: only --objective glipv2 trains the VQA head (GLIPv2's VQA fine-tuning)")


__all__ = ["GLIPObjective", "GLIPOptions", "GLIPTransform", "GLIPv2Objective", "GLIPv2Options", "Phrases",
           "glip_targets"]
