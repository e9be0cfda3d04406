"""GLIP (Li et al. 2022, "Grounded Language-Image Pre-training") as a head on a frozen CLIP.

Image side: the frozen ViT's block taps -> F-ViT's pyramid (``ViTPyramid``: FPN + a max-pool level). Text side: the
frozen CLIP text tower's per-token features (``encode_text_tokens``), projected. ``layers`` fusion layers
(``fusion.py``) exchange information both ways, then every location of every level predicts

- alignment logits with every token: ``scale * cos(region, token) + bias_token + bias0`` (GLIP's dot-product head:
  a learnt scale, a per-token bias from the token itself and a bias started at the focal prior),
- a box as FCOS distances (left, top, right, bottom) in units of the level's stride (torchvision's
  ``BoxLinearCoder``), and a centerness logit.

A phrase's score at a location is the mean probability of its tokens (GLIP's grounding-to-detection rule), times
the centerness (geometric mean, as FCOS). The CLIP stays outside the module tree, so the head file holds only what
it learns and is bound to the backbone's fingerprint.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import open_clip
import torch
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from torch import nn
from torchvision.models.detection._utils import BoxLinearCoder
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import batched_nms

from ...data.phrases import Span, token_spans
from ...data.prompts import class_prompt
from ...errors import ConfigError
from ...models.dense import dense_forward, tower_facts
from ...models.text_tokens import encode_text_tokens, text_context
from ..detection.pyramid import ViTPyramid
from .config import GLIPConfig, resolve_glip_config
from .fusion import fusion_stack
from .masks import GLIPMaskBranch
from .loss import (box_losses, inter_image_logits, inter_image_targets, location_boxes, match_locations,
                   token_focal_loss)
from .prompting import prompt_chunks
from .vqa import vqa_part


@dataclass
class Predictions:
    """Per-location outputs for a batch: logits (B, N, L), box distances (B, N, 4), centerness (B, N); the
    locations' reference boxes (N, 4), their count per level, and the padded input's image sizes."""

    logits: torch.Tensor
    distances: torch.Tensor
    centerness: torch.Tensor
    anchors: torch.Tensor
    counts: list[int]
    image_sizes: list[tuple[int, int]]
    levels: list[torch.Tensor] | None = None   # the fused image levels (what the mask branch reads)


class GLIPHead(nn.Module):
    """Grounding head (kind ``grounder/glip``): regions aligned with prompt tokens.

    Args:
        bundle: the loaded CLIP (frozen; not a submodule).
        config: the architecture; backbone-dependent fields are resolved here.
        classes: the class names it trained on as detection prompts (none for grounding data): what ``detect``
            names by default and what the OV protocol counts as base.
    """

    kind = "grounder/glip"

    def __init__(self, bundle: Any, config: GLIPConfig, classes: Sequence[str] = ()) -> None:
        super().__init__()
        preprocess = open_clip.get_model_preprocess_cfg(bundle.model)
        mean, std = preprocess.get("mean", OPENAI_DATASET_MEAN), preprocess.get("std", OPENAI_DATASET_STD)
        self.config = c = resolve_glip_config(config, tower_facts(bundle.model), text_context(bundle.model),
                                              mean, std)
        object.__setattr__(self, "bundle", bundle)
        self.classes = list(classes)
        self.pyramid = ViTPyramid(c.width, c.patch_size, c.strides, c.channels)
        self.text_in = nn.Linear(c.embed_dim, c.text_dim)
        self.layers = fusion_stack(c.layers, c.channels, c.text_dim, c.fusion_dim, c.fusion_heads, c.layer_scale,
                                   c.fusion)
        self.region = nn.Conv2d(c.channels, c.text_dim, 3, padding=1)
        self.token = nn.Linear(c.text_dim, c.text_dim)
        self.token_bias = nn.Linear(c.text_dim, 1)
        self.box = nn.Conv2d(c.channels, 4, 3, padding=1)
        self.centerness = nn.Conv2d(c.channels, 1, 3, padding=1)
        self.log_scale = nn.Parameter(torch.tensor(math.log(c.logit_scale)))
        self.masks = GLIPMaskBranch(c.channels, len(c.strides) + 1, c.mask_samples) if c.mask_head else None
        self.bias0 = nn.Parameter(torch.tensor(-math.log((1 - c.prior) / c.prior)))
        nn.init.zeros_(self.token_bias.weight)
        nn.init.zeros_(self.token_bias.bias)
        self.coder = BoxLinearCoder(normalize_by_size=True)
        self.vqa = vqa_part(c)       # GLIPv2's answer classifier on the fused features (None without answers)
        self.transform = GeneralizedRCNNTransform(c.image_size, c.image_size, c.mean, c.std,
                                                  size_divisible=2 * c.strides[-1], _skip_resize=True)

    @property
    def clip(self) -> nn.Module:
        return self.bundle.model

    @property
    def logit_scale(self) -> nn.Parameter:
        """The learnt log scale of the region-token cosine (named as the detector heads name theirs)."""
        return self.log_scale

    @property
    def has_masks(self) -> bool:
        """Whether the head has GLIPv2's mask branch (``config.mask_head``)."""
        return self.masks is not None

    @property
    def strides(self) -> list[int]:
        return list(self.config.strides) + [2 * self.config.strides[-1]]

    # ------------------------------------------------------------------------------ pieces
    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """(B, context) token ids of ``texts`` (cut at the text tower's context)."""
        return self.bundle.tokenizer(list(texts), context_length=self.config.context)

    def encode_text(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L, text_dim) projected token features of the frozen text tower, and the real-token mask (B, L)."""
        with torch.no_grad():
            tokens = encode_text_tokens(self.clip, ids.to(self.log_scale.device)).float()
        return self.text_in(tokens), ids.to(tokens.device) != 0

    def image_levels(self, images: Sequence[torch.Tensor], targets: list[dict[str, torch.Tensor]] | None = None
                     ) -> tuple[list[torch.Tensor], Any, list[dict[str, torch.Tensor]] | None]:
        """Normalise + batch (+ resize at test time), the frozen CLIP's taps, the pyramid's maps (finest first)."""
        image_list, targets = self.transform(list(images), targets)
        with torch.no_grad():
            out = dense_forward(self.clip, image_list.tensors, self.config.dense_mode, layers=self.config.taps)
        maps = self.pyramid([t.float() for t in out.layers], tuple(image_list.tensors.shape[-2:]))
        return list(maps.values()), image_list, targets

    def predict(self, levels: list[torch.Tensor], text: torch.Tensor, mask: torch.Tensor,
                image_sizes: list[tuple[int, int]]) -> Predictions:
        """Fuse, then the three predictions at every location."""
        for layer in self.layers:
            levels, text = layer(levels, text, mask)
        tokens = F.normalize(self.token(text), dim=-1)
        bias = self.token_bias(text).squeeze(-1) + self.bias0                                   # (B, L)
        regions = torch.cat([self.region(lv).flatten(2) for lv in levels], dim=2).transpose(1, 2)
        scale = self.log_scale.exp().clamp(max=100)
        logits = scale * F.normalize(regions, dim=-1) @ tokens.transpose(1, 2) + bias[:, None, :]
        logits = logits.masked_fill(~mask[:, None, :], -1e4)
        distances = torch.cat([F.relu(self.box(lv)).flatten(2) for lv in levels], dim=2).transpose(1, 2)
        centerness = torch.cat([self.centerness(lv).flatten(2) for lv in levels], dim=2)[:, 0]
        sizes = [tuple(int(s) for s in lv.shape[-2:]) for lv in levels]
        anchors = location_boxes(sizes, self.strides, logits.device)
        return Predictions(logits, distances, centerness, anchors, [h * w for h, w in sizes], image_sizes, levels)

    def forward(self, images: Sequence[torch.Tensor], ids: torch.Tensor,
                targets: list[dict[str, torch.Tensor]] | None = None) -> tuple[Predictions, Any]:
        levels, image_list, targets = self.image_levels(images, targets)
        text, mask = self.encode_text(ids)
        return self.predict(levels, text, mask, list(image_list.image_sizes)), targets

    # ------------------------------------------------------------------------------ training
    def losses(self, images: Sequence[torch.Tensor], ids: torch.Tensor, targets: list[dict[str, torch.Tensor]],
               inter_weight: float = 0.0) -> dict[str, torch.Tensor]:
        """Token focal loss, GIoU and centerness on a batch. ``targets[i]``: ``boxes`` (K, 4) in the image's pixels
        and ``positive`` (K, L) its boxes' positive-map rows over ``ids[i]``'s tokens. ``inter_weight`` > 0 adds
        GLIPv2's inter-image region-word contrastive loss (``loss_inter``) with that weight."""
        levels, image_list, targets = self.image_levels(images, targets)
        text, mask = self.encode_text(ids)
        pred = self.predict(levels, text, mask, list(image_list.image_sizes))
        cls_targets = torch.zeros_like(pred.logits)
        matched_pred, matched_boxes, matched_centerness, matched_anchors, matched_index = [], [], [], [], []
        for i, target in enumerate(targets):
            index = match_locations(pred.anchors, pred.counts, self.strides, target["boxes"],
                                    self.config.center_radius)
            fg = index >= 0
            cls_targets[i, fg] = target["positive"][index[fg]].to(cls_targets.dtype)
            anchors = pred.anchors[fg]
            matched_pred.append(self.coder.decode(pred.distances[i, fg], anchors))
            matched_boxes.append(target["boxes"][index[fg]])
            matched_centerness.append(pred.centerness[i, fg])
            matched_anchors.append(anchors)
            matched_index.append(index[fg])
        count = max(sum(len(b) for b in matched_boxes), 1)
        focal = token_focal_loss(pred.logits, cls_targets, mask[:, None, :].expand_as(pred.logits),
                                 self.config.focal_alpha, self.config.focal_gamma)
        giou, centerness = box_losses(torch.cat(matched_pred), torch.cat(matched_boxes),
                                      torch.cat(matched_centerness), torch.cat(matched_anchors))
        out = {"loss_align": focal / count, "loss_giou": giou / count, "loss_centerness": centerness / count}
        if self.masks is not None:
            masks = self.masks.loss(pred.levels, pred.image_sizes, matched_pred, matched_index,
                                    [t.get("masks") for t in targets])
            if masks is not None:
                out["loss_mask"] = masks
        if inter_weight > 0:
            goal = inter_image_targets(ids.to(mask.device), cls_targets, [t["positive"] for t in targets])
            out["loss_inter"] = inter_weight * self.inter_image_loss(levels, text, mask, goal) / count
        return out

    def inter_image_loss(self, levels: list[torch.Tensor], text: torch.Tensor, mask: torch.Tensor,
                         goal: torch.Tensor) -> torch.Tensor:
        """Summed focal loss of every region of the batch against every prompt's real tokens (``goal`` from
        ``inter_image_targets``), on the pre-fusion features with the alignment head's projections."""
        regions = torch.cat([self.region(lv).flatten(2) for lv in levels], dim=2).transpose(1, 2)
        bias = self.token_bias(text).squeeze(-1) + self.bias0
        logits = inter_image_logits(regions, self.token(text), bias, self.log_scale.exp().clamp(max=100))
        return token_focal_loss(logits, goal, mask[None, None].expand_as(logits), self.config.focal_alpha,
                                self.config.focal_gamma)

    # ------------------------------------------------------------------------------ inference
    @contextlib.contextmanager
    def _evaluating(self) -> Iterator[None]:
        was = self.training
        self.eval()
        try:
            yield
        finally:
            self.train(was)

    @torch.no_grad()
    def phrase_scores(self, images: Sequence[torch.Tensor], ids: torch.Tensor,
                      phrase_tokens: Sequence[Sequence[Sequence[int]]]) -> tuple[list[torch.Tensor], Predictions]:
        """Per image, (N locations, P phrases) scores: mean token probability x centerness, square-rooted.
        ``phrase_tokens[i][p]``: token positions of phrase p in ``ids[i]`` (``data.phrases.token_spans``)."""
        with self._evaluating():
            pred, _ = self(images, ids)
        probs, centerness = pred.logits.sigmoid(), pred.centerness.sigmoid()
        out = []
        for i, phrases in enumerate(phrase_tokens):
            columns = torch.zeros(pred.logits.shape[-1], max(len(phrases), 1), device=probs.device)
            for p, tokens in enumerate(phrases):
                kept = [t for t in tokens if t < columns.shape[0]]
                if kept:
                    columns[kept, p] = 1.0 / len(kept)
            scores = probs[i] @ columns
            out.append((scores * centerness[i][:, None]).clamp_min(0).sqrt()[:, :len(phrases)])
        return out, pred

    def add_masks(self, pred: Predictions, results: list[dict[str, torch.Tensor]]) -> None:
        """Each result's ``masks``: (N, 1, 28, 28) probabilities of its boxes (pasted by ``postprocess``)."""
        logits = self.masks(pred.levels, [r["boxes"] for r in results], pred.image_sizes).sigmoid()
        for result, part in zip(results, logits.split([len(r["boxes"]) for r in results])):
            result["masks"] = part

    def decode(self, pred: Predictions, index: int) -> torch.Tensor:
        """(N, 4) the boxes of image ``index`` in the padded input's pixels."""
        return self.coder.decode(pred.distances[index], pred.anchors)

    def select(self, boxes: torch.Tensor, scores: torch.Tensor, size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """Threshold, top candidates, per-phrase NMS, the best ``detections``: boxes, scores, labels (phrase)."""
        c = self.config
        flat = scores.flatten()
        keep = torch.nonzero(flat > c.score_threshold).flatten()
        keep = keep[flat[keep].topk(min(c.candidates, len(keep))).indices]
        location, label = keep // scores.shape[1], keep % scores.shape[1]
        chosen = boxes[location].clone()
        chosen[:, 0::2] = chosen[:, 0::2].clamp(0, size[1])
        chosen[:, 1::2] = chosen[:, 1::2].clamp(0, size[0])
        kept = batched_nms(chosen, flat[keep], label, c.nms)[:c.detections]
        return {"boxes": chosen[kept], "scores": flat[keep][kept], "labels": label[kept]}

    @torch.no_grad()
    def ground(self, images: Sequence[torch.Tensor], texts: Sequence[str],
               spans: Sequence[Sequence[Sequence[Span]]]) -> list[dict[str, torch.Tensor]]:
        """Per image, detections of its text's phrases (``spans[i][p]``: phrase p's character spans in
        ``texts[i]``): boxes in the given image's pixels, scores, labels = phrase index."""
        ids = self.tokenize(texts)
        phrase_tokens = [token_spans(self.bundle.tokenizer, t, s) for t, s in zip(texts, spans)]
        with self._evaluating():     # the transform maps boxes back to the given image only in eval mode
            scores, pred = self.phrase_scores(images, ids, phrase_tokens)
            results = [self.select(self.decode(pred, i), scores[i], pred.image_sizes[i])
                       for i in range(len(images))]
            if self.masks is not None:
                self.add_masks(pred, results)
            originals = [tuple(int(s) for s in image.shape[-2:]) for image in images]
            return self.transform.postprocess(results, pred.image_sizes, originals)

    @torch.no_grad()
    def detect(self, images: Sequence[torch.Tensor], classnames: Sequence[str] | None = None
               ) -> list[dict[str, torch.Tensor]]:
        """Detections of ``classnames`` per image (labels index them), as a detector head gives them: the names
        as GLIP prompts, chunked to fit the context, each chunk scored alone, candidates merged before one NMS."""
        names = list(classnames or self.classes)
        if not names:
            raise ConfigError("a GLIP head detects the classes it is given: name them (--classes)")
        merged: list[list[dict[str, torch.Tensor]]] = [[] for _ in images]
        for chunk in prompt_chunks(self.bundle.tokenizer, names, self.config.context):
            text, spans = class_prompt([names[i] for i in chunk])
            found = self.ground(images, [text] * len(images), [[(s,) for s in spans]] * len(images))
            columns = torch.tensor(chunk, dtype=torch.long)
            for parts, result in zip(merged, found):
                parts.append({**result, "labels": columns.to(result["labels"].device)[result["labels"]]})
        out = []
        for parts in merged:
            found = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}   # boxes, scores, labels (+ masks)
            keep = batched_nms(found["boxes"], found["scores"], found["labels"], self.config.nms)
            out.append({k: v[keep[:self.config.detections]] for k, v in found.items()})
        return out

    def train(self, mode: bool = True) -> "GLIPHead":
        super().train(mode)
        self.clip.eval()
        return self
