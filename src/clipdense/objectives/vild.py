"""ViLD: open-vocabulary detection by vision and language knowledge distillation (Gu et al., ICLR 2022).

``clipdense train --objective vild``: the detector of ``fvit.py`` with ViLD's two heads on the frozen CLIP ViT:
- ViLD-text: region embeddings classified against the class text embeddings plus a *learned* background
  embedding, cross-entropy on base classes (temperature 1/0.01, fixed);
- ViLD-image: a second projection learns, with an L1 loss, the CLIP image embedding of each region's crop
  (ensemble of the 1x and 1.5x crops). Regions are proposals from a COCO JSON (``proposals=FILE``, e.g. the ones a
  trained F-ViT's RPN exports with ``clipdense detect --proposals``) or, without one, the image's base boxes.
  Crops are cut from the full-resolution image by CLIPSelf's crop path; their embeddings are cached by
  (image, box, size) in ``teacher_cache`` as CLIPSelf's teacher cache does, so each is computed once.
At test time the two heads' scores are ensembled (geometric mean, weight 2/3: alpha 1/3 for base, beta 2/3 novel).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from torch import nn

from ..data.sample import Sample
from ..data.transforms import keep_boxes
from ..errors import ConfigError, DataError
from ..heads.detection import ViLDDetector
from ..heads.detection.detector import Detector
from ..models.pooling import expand_boxes, teacher_crops
from .clipself_regions import image_digest, region_keys
from .base import DataInfo
from .fvit import DetectionObjective, DetectionOptions, DetectionTransform
from .teacher_cache import TeacherCache, teacher_fingerprint
from .views import model_image_stats


@dataclass
class ViLDOptions(DetectionOptions):
    """F-ViT's options with ViLD's classifier and distillation settings."""

    temperature: float = 100.0
    learn_temperature: bool = False
    alpha: float = 1 / 3
    beta: float = 2 / 3
    regions: int = 10                 # distilled regions per image
    proposals: str = ""               # COCO JSON of proposals (file_name -> boxes, best first); "" = base boxes
    crop_scales: list[float] = field(default_factory=lambda: [1.0, 1.5])
    image_weight: float = 0.5         # weight of the ViLD-image L1 loss
    teacher_cache: str = ""           # folder caching the crops' CLIP embeddings ("" = no cache)


def read_proposals(path: str | Path) -> dict[str, torch.Tensor]:
    """file_name -> (N, 4) xyxy pixel boxes, in file order, from a COCO instances-style JSON."""
    path = Path(path)
    try:
        coco = json.loads(path.read_text())
        names = {int(image["id"]): str(image["file_name"]) for image in coco["images"]}
        found: dict[str, list[list[float]]] = {name: [] for name in names.values()}
        for ann in coco["annotations"]:
            x, y, w, h = (float(v) for v in ann["bbox"])
            found[names[int(ann["image_id"])]].append([x, y, x + w, y + h])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"proposals {path}: expected a COCO JSON with images and annotations (bbox, image_id) "
                        f"({exc.__class__.__name__}: {exc})") from exc
    return {name: torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4) for name, boxes in found.items()}


@dataclass
class ViLDTransform(DetectionTransform):
    """F-ViT's sample plus up to ``regions`` distillation regions moved with the geometry (regions (K, 4),
    region_valid (K,)), their teacher crops (K, S, 3, T, T) cut from the original image and cache keys (K, S)."""

    teacher_size: int = 224
    mean: Sequence[float] = ()
    std: Sequence[float] = ()
    proposals: dict[str, torch.Tensor] | None = None
    cached: Callable[[int], bool] | None = None

    def distilled(self, sample: Sample) -> torch.Tensor:
        """The (k, 4) pixel boxes distilled for this image: its proposals, else its base boxes."""
        if self.proposals is not None:
            boxes = self.proposals.get(sample.key, torch.zeros(0, 4))
        else:
            boxes = sample.boxes
        width, height = sample.image.size
        boxes = torch.minimum(boxes.clamp_min(0), torch.tensor([width, height, width, height], dtype=torch.float32))
        boxes = boxes[((boxes[:, 2] - boxes[:, 0]) >= 1) & ((boxes[:, 3] - boxes[:, 1]) >= 1)]
        return boxes[: self.options.regions]

    def crops(self, sample: Sample, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(K, S, 3, T, T) crops (zero where the cache already holds the embedding) and (K, S) keys."""
        scales, capacity, size = self.options.crop_scales, self.options.regions, self.teacher_size
        crops = torch.zeros(capacity, len(scales), 3, size, size)
        keys = torch.zeros(capacity, len(scales), dtype=torch.int64)
        if not len(boxes):
            return crops, keys
        width, height = sample.image.size
        digest = image_digest(sample.image)
        pixels = TF.normalize(TF.to_tensor(sample.image), list(self.mean), list(self.std))[None]
        for j, scale in enumerate(scales):
            expanded = expand_boxes(boxes, float(scale), height, width)
            keys[: len(boxes), j] = region_keys(digest, expanded / torch.tensor([width, height] * 2), size)
            todo = torch.tensor([self.cached is None or not self.cached(int(k)) for k in keys[: len(boxes), j]])
            if todo.any():
                crops[: len(boxes), j][todo] = teacher_crops(pixels, [expanded[todo]], size, self.mean, self.std)
        return crops, keys

    def __call__(self, sample: Sample, generator: torch.Generator) -> dict[str, torch.Tensor]:
        sample = self.trained_only(sample)
        boxes = self.distilled(sample)
        crops, keys = self.crops(sample, boxes)
        marker = -(1 + torch.arange(len(boxes)))
        moved = self.geometry()(sample.replace(boxes=torch.cat([sample.boxes, boxes]),
                                               labels=torch.cat([sample.labels, marker])), generator)
        out = self.pack(keep_boxes(moved, moved.labels > 0))
        regions, valid = torch.zeros(self.options.regions, 4), torch.zeros(self.options.regions, dtype=torch.bool)
        index = -moved.labels[moved.labels < 0] - 1
        regions[index], valid[index] = moved.boxes[moved.labels < 0], True
        return {**out, "regions": regions, "region_valid": valid, "crops": crops, "region_keys": keys}


class ViLDObjective(DetectionObjective):
    """ViLD detector on a frozen CLIP ViT: text-embedding classifier + L1 to cached CLIP crop embeddings."""

    name: ClassVar[str] = "vild"
    Options: ClassVar[type] = ViLDOptions
    detector_class: ClassVar[type[Detector]] = ViLDDetector
    #: a batch whose images keep no distillation region leaves the image branch without gradient
    ddp_find_unused_parameters: bool = True

    def __init__(self, bundle: Any, options: Any = None, info: DataInfo | None = None, total_steps: int = 1) -> None:
        super().__init__(bundle, options, info, total_steps)
        model = bundle.model
        o = self.options
        if o.regions < 1 or not o.crop_scales or min(o.crop_scales) <= 0 or o.image_weight < 0:
            raise ConfigError("regions must be >= 1, crop_scales positive and image_weight >= 0")
        if o.mask_head:
            raise ConfigError("mask_head: only F-ViT trains a mask branch (--objective fvit); ViLD is box-only here")
        self.total_steps = total_steps
        self.teacher_size, self.mean, self.std = model_image_stats(model)
        self.proposals = read_proposals(o.proposals) if o.proposals else None
        self.cache = None
        if o.teacher_cache:
            fingerprint = teacher_fingerprint(model.visual, f"vild size={self.teacher_size}")
            self.cache = TeacherCache(o.teacher_cache, fingerprint)

    def sample_transform(self) -> ViLDTransform:
        return ViLDTransform(self.options, self.detector.config.image_size, self.vocabulary, self.teacher_size,
                             self.mean, self.std, self.proposals,
                             self.cache.__contains__ if self.cache is not None else None)

    @torch.no_grad()
    def teacher_targets(self, crops: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """(M, D) unit-norm mean of the CLIP embeddings of each region's crops (M, S, 3, T, T)."""
        flat_crops, flat_keys = crops.flatten(0, 1), keys.flatten().cpu()
        out = torch.empty(len(flat_keys), self.detector.config.embed_dim, device=crops.device)
        found = torch.zeros(len(flat_keys), dtype=torch.bool)
        if self.cache is not None:
            found, values = self.cache.lookup(flat_keys)
            if found.any():
                out[found.to(crops.device)] = torch.stack([v for v in values if v is not None]).to(crops.device)
        missing = (~found).to(crops.device)
        if missing.any():
            fresh = F.normalize(self.bundle.model.encode_image(flat_crops[missing]).float(), dim=-1)
            out[missing] = fresh
            if self.cache is not None:
                self.cache.store(flat_keys[~found], fresh)
        return F.normalize(out.reshape(*keys.shape, -1).mean(1), dim=-1)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        step = self.detection_step(batch)
        valid = batch["region_valid"]
        boxes = [b[v] for b, v in zip(batch["regions"], valid)]
        if valid.any():
            student = F.normalize(self.detector.regions(step.features, boxes).image_embedding.float(), dim=-1)
            target = self.teacher_targets(batch["crops"][valid], batch["region_keys"][valid])
            image_loss = (student - target).abs().sum(-1).mean()
        else:
            image_loss = self.detector.logit_scale.new_zeros(())
        losses = {**step.losses, "loss_image": self.options.image_weight * image_loss}
        return {"loss": sum(losses.values()), **{k: v.detach() for k, v in losses.items()}}

    @torch.no_grad()
    def after_step(self, step: int) -> None:
        if self.cache is not None and (step % 200 == 0 or step >= self.total_steps):
            self.cache.flush()
