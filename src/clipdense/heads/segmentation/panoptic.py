"""An open-vocabulary panoptic segmenter in ODISE's role: a Mask2Former-style mask generator on the CLIP's own
block pyramid, whose masks are classified twice — by the head (class embeddings against text embeddings plus a
learnt "no object" embedding) and by mask pooling on a CLIP (the frozen backbone, or another one with the same
text space such as a CLIPSelf-refined copy) — and combined by the geometric ensemble.

    head = cd.load_head("RUN", bundle)                                   # kind segmenter/panoptic
    result = head.panoptic(image, ["red circle", "blue star", "sky"], stuff=["sky"])   # a PanopticResult

ODISE reads its mask features off a text-to-image diffusion UNet, which cannot be had here; the generator reads
the CLIP's own multi-block pyramid instead (as FC-CLIP does with its frozen CLIP). The backbone stays frozen and
outside the head's module tree, so a head file holds only what it learned and is bound to the backbone's
fingerprint. Trained by ``clipdense train --objective mask2former``.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Sequence

import open_clip
import torch
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from torch import nn

from ...config import build_config
from ...errors import ConfigError
from ...models.dense import DENSE_MODES, dense_forward, tower_facts
from ...models.text import text_classifier
from ..detection.config import default_taps
from ..detection.pyramid import ViTPyramid
from ..registry import HeadKind, register_head_kind
from .mask_decoder import MaskedAttentionDecoder, QueryPrediction
from .panoptic_merge import (PanopticResult, instance_predictions, merge_panoptic, open_vocabulary_probabilities,
                             semantic_scores)


@dataclass
class PanopticConfig:
    """The mask generator's architecture and test-time behaviour (saved as JSON in its head file).

    Args:
        taps: four block indices feeding the pyramid ([] = F-ViT's rule: depth/3, depth/2, 2 depth/3, last).
        strides: pyramid strides; the finest gives the mask features, the others the decoder's memory.
        hidden_dim / mask_dim: channels of the pyramid and queries / of the mask features.
        queries / decoder_layers / heads / ffn_dim: Mask2Former's N, L, attention heads and FFN width.
        image_size: the long side images are resized to (0 = the tower's input side).
        templates: prompt templates of the text embeddings.
        temperature: initial scale of the head's cosine logits (learnt).
        dense_mode: how the last block makes the dense map the out-of-vocabulary score pools.
        clip_temperature: softmax temperature of that score (0 = the CLIP's logit scale).
        alpha / beta: ensemble exponents of the CLIP's score for seen / unseen classes (ODISE, FC-CLIP: 0.4, 0.8).
        object_threshold / overlap_threshold: panoptic merging (Mask2Former: 0.8, 0.8).
        stuff: the trained vocabulary's stuff classes; novel: classes held out of training.
    """

    taps: list[int] = field(default_factory=list)
    strides: list[int] = field(default_factory=lambda: [4, 8, 16, 32])
    hidden_dim: int = 256
    mask_dim: int = 256
    queries: int = 100
    decoder_layers: int = 9
    heads: int = 8
    ffn_dim: int = 2048
    image_size: int = 0
    templates: str = "imagenet"
    temperature: float = 50.0
    dense_mode: str = "maskclip"
    clip_temperature: float = 0.0
    alpha: float = 0.4
    beta: float = 0.8
    object_threshold: float = 0.8
    overlap_threshold: float = 0.8
    stuff: list[str] = field(default_factory=list)
    novel: list[str] = field(default_factory=list)


def check_config(config: PanopticConfig, num_blocks: int) -> None:
    """One-line errors for impossible architectures and thresholds."""
    for name in ("hidden_dim", "mask_dim", "queries", "heads", "ffn_dim", "temperature"):
        if not getattr(config, name) > 0:
            raise ConfigError(f"panoptic {name} must be > 0, got {getattr(config, name)}")
    if config.decoder_layers < 0 or config.hidden_dim % config.heads:
        raise ConfigError(f"panoptic decoder_layers must be >= 0 and hidden_dim {config.hidden_dim} divisible by "
                          f"heads {config.heads}")
    if len(config.strides) < 2 or len(config.taps) != len(config.strides):
        raise ConfigError(f"panoptic taps {config.taps} / strides {config.strides}: one block per stride, >= 2")
    if any(not 0 <= t < num_blocks for t in config.taps):
        raise ConfigError(f"panoptic taps {config.taps}: blocks of this {num_blocks}-block tower are 0..{num_blocks - 1}")
    if config.dense_mode not in DENSE_MODES:
        raise ConfigError(f"dense_mode must be one of {sorted(DENSE_MODES)}, got {config.dense_mode!r}")
    for name in ("alpha", "beta", "object_threshold", "overlap_threshold"):
        if not 0 <= getattr(config, name) <= 1:
            raise ConfigError(f"panoptic {name} must be in [0, 1], got {getattr(config, name)}")
    if config.image_size < 0 or config.image_size % config.strides[-1]:
        raise ConfigError(f"panoptic image_size {config.image_size}: a multiple of the largest stride "
                          f"{config.strides[-1]} (0 = the tower's input side)")


@dataclass
class GeneratorOutput:
    """One forward: the predictions (initial + one per decoder layer; the last is the output) and the CLIP's
    dense map (B, D, h, w), unnormalised."""

    predictions: list[QueryPrediction]
    dense: torch.Tensor


class PanopticHead(nn.Module):
    """Pyramid -> mask features + memory -> masked-attention decoder -> per-query class embedding and mask.

    Args:
        bundle: the loaded CLIP (frozen; not a submodule).
        config: the architecture (backbone-dependent fields resolved here).
        classes: the vocabulary it trained on (its "seen" classes).
    """

    kind: ClassVar[str] = "segmenter/panoptic"

    def __init__(self, bundle: Any, config: PanopticConfig, classes: Sequence[str] | None = None) -> None:
        super().__init__()
        facts = tower_facts(bundle.model)
        config = dataclasses.replace(config, taps=[int(t) for t in config.taps] or default_taps(facts.num_blocks),
                                     strides=[int(s) for s in config.strides])
        config.image_size = int(config.image_size or math.ceil(max(facts.image_size) / config.strides[-1])
                                * config.strides[-1])
        check_config(config, facts.num_blocks)
        object.__setattr__(self, "bundle", bundle)
        self.config, self.classes = config, list(classes or [])
        c = config
        self.pyramid = ViTPyramid(facts.width, int(facts.patch_size[0]), c.strides, c.hidden_dim)
        self.mask_features = nn.Conv2d(c.hidden_dim, c.mask_dim, 1)
        self.decoder = MaskedAttentionDecoder(c.hidden_dim, c.queries, c.decoder_layers, c.heads, c.ffn_dim,
                                              len(c.strides) - 1, facts.output_dim, c.mask_dim)
        self.void_embedding = nn.Parameter(F.normalize(torch.randn(facts.output_dim), dim=0))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(c.temperature)))
        preprocess = open_clip.get_model_preprocess_cfg(bundle.model)
        self.register_buffer("mean", torch.tensor(preprocess.get("mean", OPENAI_DATASET_MEAN)).view(3, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(preprocess.get("std", OPENAI_DATASET_STD)).view(3, 1, 1),
                             persistent=False)
        self._text: dict[tuple[int, tuple[str, ...]], torch.Tensor] = {}

    # ------------------------------------------------------------------------------ head files
    @classmethod
    def from_head_config(cls, config: Mapping[str, Any], bundle: Any, classes: Sequence[str] | None) -> "PanopticHead":
        return cls(bundle, build_config(PanopticConfig, None, dict(config)), classes)

    @property
    def clip(self) -> nn.Module:
        return self.bundle.model

    def train(self, mode: bool = True) -> "PanopticHead":
        super().train(mode)
        self.clip.eval()
        return self

    # ------------------------------------------------------------------------------ pieces
    def text_embeddings(self, names: Sequence[str], bundle: Any = None) -> torch.Tensor:
        """(C, D) unit-norm prompt-ensemble embeddings of ``names`` by ``bundle``'s text tower (default: the
        backbone's; frozen, memoised)."""
        if not names:
            raise ConfigError("classes: expected at least one class name")
        bundle = bundle or self.bundle
        key = (id(bundle), tuple(names))
        device = self.logit_scale.device
        if key not in self._text or self._text[key].device != device:
            self._text[key] = text_classifier(bundle, list(names), self.config.templates).to(device)
        return self._text[key]

    def forward(self, images: torch.Tensor) -> GeneratorOutput:
        """``images``: (B, 3, H, W) normalised, H and W multiples of the largest stride."""
        with torch.no_grad():
            out = dense_forward(self.clip, images, self.config.dense_mode, layers=self.config.taps)
        pyramid = self.pyramid([t.float() for t in out.layers], tuple(images.shape[-2:]))
        mask_features = self.mask_features(pyramid["0"])
        memories = [pyramid[str(i)] for i in reversed(range(1, len(self.config.strides)))]
        return GeneratorOutput(self.decoder(memories, mask_features), out.dense.float())

    def class_logits(self, embedding: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """(..., C + 1): learnt temperature x cosine against [classes; "no object"] ("no object" last)."""
        columns = F.normalize(torch.cat([text.float(), self.void_embedding[None].float()]), dim=-1)
        return self.logit_scale.exp().clamp(max=100) * F.normalize(embedding.float(), dim=-1) @ columns.T

    def prepare(self, image: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """A (3, H, W) image in [0, 1] -> (1, 3, S', S'') normalised, long side ``image_size``, zero-padded to
        multiples of the largest stride; and the resized (h, w) before padding."""
        side, step = self.config.image_size, self.config.strides[-1]
        scale = side / max(image.shape[-2:])
        size = (max(1, round(image.shape[-2] * scale)), max(1, round(image.shape[-1] * scale)))
        x = F.interpolate(image[None].float().to(self.mean.device), size=size, mode="bilinear", align_corners=False,
                          antialias=True)
        x = (x - self.mean) / self.std
        return F.pad(x, (0, -size[1] % step, 0, -size[0] % step)), size

    # ------------------------------------------------------------------------------ inference
    def thing_flags(self, classes: Sequence[str], stuff: Sequence[str] = ()) -> torch.Tensor:
        """(C,) bool: a class is stuff when named in ``stuff`` or recorded as stuff in the head, else a thing."""
        named = set(stuff) | set(self.config.stuff)
        return torch.tensor([c not in named for c in classes], dtype=torch.bool)

    def clip_scores(self, dense: torch.Tensor, mask_probs: torch.Tensor, text: torch.Tensor,
                    clip: nn.Module) -> torch.Tensor:
        """(Q, C) the out-of-vocabulary score: each mask (binarised at 0.5; soft when empty at the map's size)
        average-pools the CLIP's dense map (1, D, h, w), softmax of temperature x cosine to the text (C, D)."""
        weights = F.interpolate(mask_probs[None].float(), size=dense.shape[-2:], mode="bilinear",
                                align_corners=False)[0]
        binary = (weights > 0.5).float()
        weights = torch.where(binary.flatten(1).sum(1)[:, None, None] > 0, binary, weights)
        pooled = torch.einsum("qhw,dhw->qd", weights, dense[0].float()) / weights.flatten(1).sum(1, keepdim=True) \
            .clamp_min(1e-6)
        scale = self.config.clip_temperature or float(clip.logit_scale.exp())
        return (scale * F.normalize(pooled, dim=-1) @ F.normalize(text.float(), dim=-1).T).softmax(-1)

    @torch.no_grad()
    def batch_queries(self, x: torch.Tensor, classes: Sequence[str], clip: Any = None,
                      valid: tuple[int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, Q, C + 1) ensembled class probabilities ("no object" last) and (B, Q, H, W) mask probabilities at
        the input's size, for normalised images ``x`` (B, 3, H, W) whose top-left ``valid`` (h, w) is the image
        (the rest padding, left out of the mask pooling). ``clip``: the bundle whose mask-pooled score enters the
        ensemble (default: the frozen backbone; e.g. a CLIPSelf-refined CLIP of the same text space)."""
        was = self.training
        self.eval()
        try:
            out = self(x)
            last = out.predictions[-1]
            masks = F.interpolate(last.masks, size=x.shape[-2:], mode="bilinear", align_corners=False).sigmoid()
            logits = self.class_logits(last.embedding, self.text_embeddings(classes))
            seen = torch.tensor([c in set(self.classes) for c in classes], dtype=torch.bool)
            valid = valid or tuple(x.shape[-2:])
            probs = []
            for b in range(x.shape[0]):
                out_probs = self._clip_probabilities(x[b:b + 1], out.dense[b:b + 1], masks[b], classes, clip, valid)
                probs.append(open_vocabulary_probabilities(logits[b], out_probs, seen, self.config.alpha,
                                                           self.config.beta))
            return torch.stack(probs), masks
        finally:
            self.train(was)

    def _clip_probabilities(self, x: torch.Tensor, dense: torch.Tensor, masks: torch.Tensor, classes: Sequence[str],
                            clip: Any, valid: tuple[int, int]) -> torch.Tensor | None:
        """(Q, C) the CLIP's mask-pooled score on the valid part of one image (None when the ensemble ignores it)."""
        if not (self.config.alpha or self.config.beta):
            return None
        bundle = clip or self.bundle
        if bundle is not self.bundle:
            dense = dense_forward(bundle.model, x, self.config.dense_mode).dense.float()
        rows = math.ceil(valid[0] * dense.shape[-2] / x.shape[-2])
        cols = math.ceil(valid[1] * dense.shape[-1] / x.shape[-1])
        return self.clip_scores(dense[..., :rows, :cols], masks[:, :valid[0], :valid[1]],
                                self.text_embeddings(classes, bundle), bundle.model)

    def query_probabilities(self, image: torch.Tensor, classes: Sequence[str],
                            clip: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(Q, C + 1) class probabilities and (Q, H, W) mask probabilities at the size of a (3, H, W) image in
        [0, 1] (resized to ``image_size``, see ``batch_queries``)."""
        x, size = self.prepare(image)
        probs, masks = self.batch_queries(x, classes, clip, size)
        masks = F.interpolate(masks[:, :, :size[0], :size[1]], size=tuple(image.shape[-2:]), mode="bilinear",
                              align_corners=False)
        return probs[0], masks[0]

    @torch.no_grad()
    def segment_logits(self, images: torch.Tensor, classes: Sequence[str]) -> torch.Tensor:
        """(B, C, H, W) semantic scores of normalised images (``tasks.segment``'s interface for trained heads)."""
        probs, masks = self.batch_queries(images.to(self.logit_scale.device), classes)
        return torch.stack([semantic_scores(p, m) for p, m in zip(probs, masks)])

    def probabilities(self, scores: torch.Tensor) -> torch.Tensor:
        """Semantic scores over the classes, normalised per pixel (``tasks.segment``'s background rule)."""
        return scores / scores.sum(1, keepdim=True).clamp_min(1e-12)

    def panoptic(self, image: torch.Tensor, classes: Sequence[str], stuff: Sequence[str] = (),
                 clip: Any = None) -> PanopticResult:
        """The panoptic segmentation of a (3, H, W) image in [0, 1] over ``classes`` (see ``thing_flags``)."""
        probs, masks = self.query_probabilities(image, classes, clip)
        result = merge_panoptic(probs, masks, self.thing_flags(classes, stuff), self.config.object_threshold,
                                self.config.overlap_threshold)
        result.classes = list(classes)
        return result

    def semantic(self, image: torch.Tensor, classes: Sequence[str], clip: Any = None) -> torch.Tensor:
        """(C, H, W) semantic scores of the same model (Mask2Former's semantic inference)."""
        probs, masks = self.query_probabilities(image, classes, clip)
        return semantic_scores(probs, masks)

    def instances(self, image: torch.Tensor, classes: Sequence[str], stuff: Sequence[str] = (), clip: Any = None,
                  limit: int = 100) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(K, H, W) bool masks, (K,) labels, (K,) scores of the thing classes (Mask2Former's instance inference)."""
        probs, masks = self.query_probabilities(image, classes, clip)
        return instance_predictions(probs, masks, self.thing_flags(classes, stuff), limit)


register_head_kind(HeadKind(PanopticHead.kind, PanopticHead, PanopticHead.from_head_config,
                            config_of=lambda head: dataclasses.asdict(head.config),
                            classes_of=lambda head: list(head.classes) or None))
