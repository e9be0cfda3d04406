"""Open-vocabulary detectors on a frozen CLIP ViT, composed of torchvision's detection parts.

``GeneralizedRCNNTransform`` (CLIP mean/std, the detector's own input size), the ViT pyramid + FPN, torchvision's
``RegionProposalNetwork`` and ``RoIHeads`` (its sampler, matcher, box coder, ``MultiScaleRoIAlign`` and a
4 conv + 2 FC ``FastRCNNConvFCHead``); only the classifier is swapped: the last FC has the CLIP embedding width
and classes are text embeddings, so any class names work at test time. The frozen CLIP's dense map never reaches
the RPN: it rides beside the pyramid, for F-ViT's region score.

The head module holds only what it learns (pyramid, RPN, RoI head, temperature, background embedding); the CLIP
model stays outside its module tree (``bundle``) so the head file is small and tied to the backbone's fingerprint.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Iterator, Sequence

import open_clip
import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import RoIHeads, maskrcnn_loss
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import MultiScaleRoIAlign

from ...errors import ConfigError
from ...models.dense import DenseOutput, dense_forward, tower_facts
from ...models.pooling import pool_boxes
from ...models.text import text_classifier
from .config import DetectorConfig, resolve_config
from .pyramid import ViTPyramid, group_norm
from .scoring import ensemble_scores, select_detections

BOX_LOSS_BETA = 1 / 9   # torchvision's fastrcnn_loss


@dataclass
class RegionOutputs:
    """Per-RoI outputs of the box head: class embedding (N, D), class-agnostic box deltas (N, 4), and ViLD's
    image embedding (N, D) or None."""

    embedding: torch.Tensor
    deltas: torch.Tensor
    image_embedding: torch.Tensor | None = None


@dataclass
class Features:
    """One forward of the frozen backbone and the pyramid on a transformed batch."""

    images: Any                       # torchvision ImageList (normalised, padded tensors + sizes)
    targets: list[dict[str, torch.Tensor]] | None
    pyramid: dict[str, torch.Tensor]
    dense: torch.Tensor               # (B, D, h, w) the frozen CLIP's dense map (its dense mode), unnormalised


@dataclass
class TrainingStep:
    """What ``Detector.losses`` returns: the named losses and what the ViLD objective reuses."""

    losses: dict[str, torch.Tensor]
    features: Features
    proposals: list[torch.Tensor]    # the sampled RoIs per image (ground truth included)
    regions: RegionOutputs


class RegionEmbedding(nn.Module):
    """The box predictor: last FC to the CLIP width (class embedding), class-agnostic deltas, and optionally
    a second projection (ViLD's image-embedding branch)."""

    def __init__(self, in_features: int, embed_dim: int, image_branch: bool) -> None:
        super().__init__()
        self.embed = nn.Linear(in_features, embed_dim)
        self.deltas = nn.Linear(in_features, 4)
        self.image_embed = nn.Linear(in_features, embed_dim) if image_branch else None

    def forward(self, x: torch.Tensor) -> RegionOutputs:
        image = self.image_embed(x) if self.image_embed is not None else None
        return RegionOutputs(self.embed(x), self.deltas(x), image)


def _rpn(config: DetectorConfig) -> RegionProposalNetwork:
    levels = len(config.anchor_sizes)
    anchors = AnchorGenerator(tuple((int(a),) for a in config.anchor_sizes),
                              (tuple(float(r) for r in config.aspect_ratios),) * levels)
    head = RPNHead(config.fpn_channels, anchors.num_anchors_per_location()[0])
    return RegionProposalNetwork(
        anchors, head, fg_iou_thresh=0.7, bg_iou_thresh=0.3, batch_size_per_image=config.rpn_batch,
        positive_fraction=0.5, nms_thresh=0.7,
        pre_nms_top_n={"training": config.rpn_pre_nms_train, "testing": config.rpn_pre_nms_test},
        post_nms_top_n={"training": config.rpn_post_nms_train, "testing": config.rpn_post_nms_test})


def _roi_pool(config: DetectorConfig, size: int) -> MultiScaleRoIAlign:
    return MultiScaleRoIAlign([str(i) for i in range(len(config.strides))], output_size=size, sampling_ratio=2,
                              canonical_scale=config.roi_canonical_scale, canonical_level=config.roi_canonical_level)


def _roi_heads(config: DetectorConfig, image_branch: bool) -> RoIHeads:
    pool = _roi_pool(config, 7)
    head = FastRCNNConvFCHead((config.fpn_channels, 7, 7), [config.head_channels] * config.head_convs,
                              [config.fc_channels], norm_layer=group_norm)
    predictor = RegionEmbedding(config.fc_channels, config.embed_dim, image_branch)
    masks: dict[str, nn.Module] = {}
    if config.mask_head:   # Mask R-CNN's branch, one class-agnostic mask per region (any class name at test time)
        masks = {"mask_roi_pool": _roi_pool(config, 14),
                 "mask_head": MaskRCNNHeads(config.fpn_channels, [config.head_channels] * 4, 1, norm_layer=group_norm),
                 "mask_predictor": MaskRCNNPredictor(config.head_channels, config.head_channels, 1)}
    return RoIHeads(pool, head, predictor, fg_iou_thresh=0.5, bg_iou_thresh=0.5,
                    batch_size_per_image=config.roi_batch, positive_fraction=0.25, bbox_reg_weights=None,
                    score_thresh=config.score_threshold, nms_thresh=config.nms, detections_per_img=config.detections,
                    **masks)


class Detector(nn.Module):
    """Base of the open-vocabulary detector heads (a registered head kind per subclass).

    Args:
        bundle: the loaded CLIP (frozen; not a submodule).
        config: the architecture; backbone-dependent fields are resolved here.
        classes: the classes it was trained on (its base classes); any others are novel at test time.
    """

    kind: ClassVar[str] = ""
    learned_background: ClassVar[bool] = False
    image_branch: ClassVar[bool] = False

    def __init__(self, bundle: Any, config: DetectorConfig, classes: Sequence[str]) -> None:
        super().__init__()
        preprocess = open_clip.get_model_preprocess_cfg(bundle.model)   # a bare open_clip model has none: OpenAI's
        mean, std = preprocess.get("mean", OPENAI_DATASET_MEAN), preprocess.get("std", OPENAI_DATASET_STD)
        self.config = resolve_config(config, tower_facts(bundle.model), mean, std)
        object.__setattr__(self, "bundle", bundle)
        self.classes = list(classes)
        c = self.config
        self.pyramid = ViTPyramid(c.width, c.patch_size, c.strides, c.fpn_channels)
        self.rpn = _rpn(c)
        self.roi_heads = _roi_heads(c, self.image_branch)
        self.transform = GeneralizedRCNNTransform(c.image_size, c.image_size, c.mean, c.std,
                                                  size_divisible=c.strides[-1], _skip_resize=True)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(c.temperature)), requires_grad=c.learn_temperature)
        background = text_classifier(bundle, ["background"], c.templates)[0].to(self.logit_scale.device)
        if self.learned_background:
            self.background_embedding = nn.Parameter(background.clone())
        else:
            self.register_buffer("background_embedding", background.clone())
        self._text: dict[tuple[str, ...], torch.Tensor] = {}

    # ------------------------------------------------------------------------------ pieces
    @property
    def clip(self) -> nn.Module:
        return self.bundle.model

    def text_embeddings(self, names: Sequence[str]) -> torch.Tensor:
        """(C, D) unit-norm prompt-ensemble embeddings of ``names`` (frozen text tower; memoised)."""
        key = tuple(names)
        if not key:
            raise ConfigError("classes: expected at least one class name")
        device = self.logit_scale.device
        if key not in self._text or self._text[key].device != device:
            self._text[key] = text_classifier(self.bundle, list(names), self.config.templates).to(device)
        return self._text[key]

    def features(self, images: Sequence[torch.Tensor],
                 targets: list[dict[str, torch.Tensor]] | None = None) -> Features:
        """Normalise + batch (+ resize at test time), run the frozen CLIP once (taps and dense map) and the pyramid."""
        image_list, targets = self.transform(list(images), targets)
        with torch.no_grad():
            out: DenseOutput = dense_forward(self.clip, image_list.tensors, self.config.dense_mode,
                                             layers=self.config.taps)
        pyramid = self.pyramid([t.float() for t in out.layers], tuple(image_list.tensors.shape[-2:]))
        return Features(image_list, targets, pyramid, out.dense.float())

    def regions(self, features: Features, proposals: list[torch.Tensor]) -> RegionOutputs:
        """RoIAlign 7x7 on the pyramid, the box head, the predictor."""
        pooled = self.roi_heads.box_roi_pool(features.pyramid, proposals, features.images.image_sizes)
        return self.roi_heads.box_predictor(self.roi_heads.box_head(pooled))

    @property
    def has_masks(self) -> bool:
        """Whether the head has the mask branch (``config.mask_head``)."""
        return bool(self.config.mask_head)

    def mask_logits(self, features: Features, boxes: list[torch.Tensor]) -> torch.Tensor:
        """(N, 1, 28, 28) class-agnostic mask logits of ``boxes`` (per image, in the transformed image's pixels)."""
        pooled = self.roi_heads.mask_roi_pool(features.pyramid, boxes, features.images.image_sizes)
        return self.roi_heads.mask_predictor(self.roi_heads.mask_head(pooled))

    def mask_loss(self, features: Features, proposals: list[torch.Tensor], matched: list[torch.Tensor],
                  labels: list[torch.Tensor]) -> torch.Tensor:
        """Mask R-CNN's per-pixel BCE on the positive RoIs against each matched box's mask (torchvision's
        ``maskrcnn_loss``; every region is scored by the one class-agnostic channel)."""
        positive = [torch.nonzero(image_labels > 0).flatten() for image_labels in labels]
        boxes = [p[k] for p, k in zip(proposals, positive)]
        masks = [t["masks"] for t in features.targets]
        indices = [m[k] for m, k in zip(matched, positive)]
        agnostic = [torch.zeros(len(m), dtype=torch.long, device=m.device) for m in masks]   # the one channel
        return maskrcnn_loss(self.mask_logits(features, boxes), boxes, masks, agnostic, indices)

    def class_logits(self, embedding: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """(N, 1 + C): temperature x cosine against [background; classes] (background is column 0, as
        torchvision's RoI heads expect)."""
        classes = torch.cat([self.background_embedding[None].to(text.dtype), text])
        scale = self.logit_scale.exp().clamp(max=100)
        return scale * F.normalize(embedding.float(), dim=-1) @ F.normalize(classes.float(), dim=-1).T

    def second_score(self, features: Features, regions: RegionOutputs, proposals: list[torch.Tensor],
                     text: torch.Tensor) -> torch.Tensor:
        """(N, C) the second opinion the ensemble mixes in (subclasses)."""
        raise ConfigError(f"{type(self).__name__} is not a complete detector: no second_score")

    # ------------------------------------------------------------------------------ training
    def losses(self, images: Sequence[torch.Tensor], targets: list[dict[str, torch.Tensor]], text: torch.Tensor,
               trained: torch.Tensor, background_weight: float) -> TrainingStep:
        """RPN and RoI losses on a batch; only the ``trained`` (C,) columns of ``text`` (C, D) enter the
        classification loss (novel columns are masked out), the background counts ``background_weight``.

        ``targets[i]["labels"]`` are 1 + column indices into ``text`` (0 is background, as in torchvision).
        """
        features = self.features(images, targets)
        proposals, rpn_losses = self.rpn(features.images, features.pyramid, features.targets)
        proposals, matched, image_labels, regression = self.roi_heads.select_training_samples(proposals,
                                                                                              features.targets)
        regions = self.regions(features, proposals)
        labels, regression = torch.cat(image_labels), torch.cat(regression)
        keep = torch.cat([torch.zeros(1, dtype=torch.long, device=labels.device),
                          1 + torch.nonzero(trained.to(labels.device)).flatten()])
        position = torch.full((1 + len(text),), -100, dtype=torch.long, device=labels.device)
        position[keep] = torch.arange(len(keep), device=labels.device)
        logits = self.class_logits(regions.embedding, text)[:, keep]
        weight = torch.ones(len(keep), device=logits.device)
        weight[0] = background_weight
        count = max(labels.numel(), 1)
        classification = F.cross_entropy(logits, position[labels], weight=weight, reduction="none").sum() / count
        positive = labels > 0
        box = F.smooth_l1_loss(regions.deltas[positive], regression[positive], beta=BOX_LOSS_BETA,
                               reduction="sum") / count
        losses = {"loss_classifier": classification, "loss_box_reg": box, **rpn_losses}
        if self.has_masks and all("masks" in t for t in features.targets):
            losses["loss_mask"] = self.mask_loss(features, proposals, matched, image_labels)
        return TrainingStep(losses, features, proposals, regions)

    # ------------------------------------------------------------------------------ inference
    @contextlib.contextmanager
    def _evaluating(self) -> Iterator[None]:
        """Inference always runs in eval mode (the transform resizes, the RPN keeps its test-time counts)."""
        was = self.training
        self.eval()
        try:
            yield
        finally:
            self.train(was)

    @torch.no_grad()
    def detect(self, images: Sequence[torch.Tensor], classnames: Sequence[str] | None = None
               ) -> list[dict[str, torch.Tensor]]:
        """Detections per image: boxes (K, 4) xyxy in the given image's pixels, scores, labels into ``classnames``
        (default: the trained classes). ``images``: (3, H, W) floats in [0, 1], any size."""
        with self._evaluating():
            return self._detect(images, list(self.classes if classnames is None else classnames))

    def _padded(self, images: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], list[tuple[int, int]]]:
        """Images padded (bottom / right, zeros) so that the test-time resize leaves each side at least one stride
        of the coarsest level: a 1 x 4000 strip would otherwise shrink to 0 rows. Also their padded sizes."""
        c, padded = self.config, []
        for image in images:
            h, w = (int(s) for s in image.shape[-2:])
            need = math.ceil(c.strides[-1] * max(h, w) / c.image_size)   # short side that resizes to one stride
            if min(h, w) < need:
                image = F.pad(image, (0, max(0, need - w), 0, max(0, need - h)))
            padded.append(image)
        return padded, [tuple(int(s) for s in image.shape[-2:]) for image in padded]

    @staticmethod
    def _clipped(results: list[dict[str, torch.Tensor]], images: Sequence[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """Boxes clipped to the unpadded images."""
        for result, image in zip(results, images):
            h, w = image.shape[-2:]
            result["boxes"][:, 0::2] = result["boxes"][:, 0::2].clamp(0, int(w))
            result["boxes"][:, 1::2] = result["boxes"][:, 1::2].clamp(0, int(h))
            if "masks" in result:   # pasted at the padded size
                result["masks"] = result["masks"][..., :int(h), :int(w)]
        return results

    def _detect(self, images: Sequence[torch.Tensor], names: list[str]) -> list[dict[str, torch.Tensor]]:
        text = self.text_embeddings(names)
        novel = torch.tensor([n not in self.classes for n in names], dtype=torch.bool)
        given = images
        images, originals = self._padded(images)
        features = self.features(images)
        proposals, _ = self.rpn(features.images, features.pyramid)
        regions = self.regions(features, proposals)
        detector = self.class_logits(regions.embedding, text).softmax(-1)[:, 1:]
        second = self.second_score(features, regions, proposals, text)
        scores = ensemble_scores(detector, second, novel, self.config.alpha, self.config.beta)
        boxes = self.roi_heads.box_coder.decode(regions.deltas, proposals)[:, 0]
        results, start = [], 0
        for size, image_proposals in zip(features.images.image_sizes, proposals):
            end = start + len(image_proposals)
            results.append(select_detections(boxes[start:end], scores[start:end], size, self.config.score_threshold,
                                             self.config.nms, self.config.detections))
            start = end
        if self.has_masks:   # (K, 1, 28, 28) probabilities, pasted into each image by the transform's postprocess
            found = self.mask_logits(features, [r["boxes"] for r in results]).sigmoid()
            for result, part in zip(results, found.split([len(r["boxes"]) for r in results])):
                result["masks"] = part
        return self._clipped(self.transform.postprocess(results, features.images.image_sizes, originals), given)

    @torch.no_grad()
    def propose(self, images: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The RPN's class-agnostic proposals per image (best first), in the given image's pixels."""
        given = images
        images, originals = self._padded(images)
        with self._evaluating():
            features = self.features(images)
            proposals, _ = self.rpn(features.images, features.pyramid)
            resized = self.transform.postprocess([{"boxes": p} for p in proposals], features.images.image_sizes,
                                                 originals)
        return [r["boxes"] for r in self._clipped(resized, given)]

    def train(self, mode: bool = True) -> "Detector":
        super().train(mode)
        self.clip.eval()   # the backbone is frozen: no dropout, ever
        return self


class FViTDetector(Detector):
    """F-ViT (CLIPSelf): fixed background text embedding; the second score is the frozen CLIP's own: RoIAlign 1x1
    of its dense map (last block in ``dense_mode``) on each proposal, softmax at the CLIP temperature."""

    kind = "detector/fvit"

    def second_score(self, features: Features, regions: RegionOutputs, proposals: list[torch.Tensor],
                     text: torch.Tensor) -> torch.Tensor:
        size = tuple(features.images.tensors.shape[-2:])
        pooled = F.normalize(pool_boxes(features.dense, proposals, size, validate=False).float(), dim=-1)
        scale = self.config.clip_temperature or float(self.clip.logit_scale.exp())
        return (scale * pooled @ text.float().T).softmax(-1)


class ViLDDetector(Detector):
    """ViLD: learned background embedding; a second projection learns the CLIP image embeddings of region crops
    (ViLD-image) and scores classes at test time (the ViLD-ensemble)."""

    kind = "detector/vild"
    learned_background = True
    image_branch = True

    def second_score(self, features: Features, regions: RegionOutputs, proposals: list[torch.Tensor],
                     text: torch.Tensor) -> torch.Tensor:
        scale = self.logit_scale.exp().clamp(max=100)
        image = F.normalize(regions.image_embedding.float(), dim=-1)
        return (scale * image @ F.normalize(text.float(), dim=-1).T).softmax(-1)


DETECTORS: dict[str, type[Detector]] = {cls.kind: cls for cls in (FViTDetector, ViLDDetector)}
