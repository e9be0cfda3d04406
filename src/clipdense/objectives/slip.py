"""SLIP: CLIP plus SimCLR between two augmented views of the image, through an MLP head.

Mu et al. 2022, "SLIP: Self-supervision meets Language-Image Pre-training" (§3, App. A).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import math

import torch
import torch.distributed.nn
import torch.nn.functional as F
from torch import nn

from ..data.sample import Sample
from .base import ClipTraining, DataInfo, SampleTransform, rank_and_world
from .clip import contrastive_loss
from .views import ImageView, Tokenize, model_image_stats


@dataclass
class SlipOptions:
    """Options of the slip objective (defaults: SLIP §3 / App. A unless noted).

    Args:
        ssl_weight: weight of the SimCLR term (SLIP's ssl_scale = 1.0).
        ssl_temperature: SimCLR temperature 0.1 (SLIP App. A).
        mlp_dim, out_dim: head hidden and output width, 4096 and 256 (SLIP's 3-layer MLP head).
        clip_crop_scale: CLIP view crop area (0.5, 1.0) (SLIP's CLIP augmentation).
        ssl_crop_scale: SimCLR views crop area (0.08, 1.0) (SimCLR, Chen et al. 2020).
        color_jitter: SimCLR colour distortion strength 1.0 (0.4/0.4/0.4/0.1, p=0.8; grayscale p=0.2).
            Gaussian blur is not applied (tiny images); flips are applied to SimCLR views only.
        local_loss, gather_with_grad, max_logit_scale: as the clip objective.
    """

    ssl_weight: float = 1.0
    ssl_temperature: float = 0.1
    mlp_dim: int = 4096
    out_dim: int = 256
    clip_crop_scale: tuple[float, float] = (0.5, 1.0)
    ssl_crop_scale: tuple[float, float] = (0.08, 1.0)
    color_jitter: float = 1.0
    local_loss: bool = True
    gather_with_grad: bool = True
    max_logit_scale: float = 100.0


def mlp_head(in_dim: int, mlp_dim: int, out_dim: int) -> nn.Sequential:
    """SLIP's SimCLR head: Linear-BN-ReLU x2 then Linear."""
    return nn.Sequential(nn.Linear(in_dim, mlp_dim), nn.BatchNorm1d(mlp_dim), nn.ReLU(inplace=True),
                         nn.Linear(mlp_dim, mlp_dim), nn.BatchNorm1d(mlp_dim), nn.ReLU(inplace=True),
                         nn.Linear(mlp_dim, out_dim))


def _gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    rank, world = rank_and_world()
    return torch.cat(torch.distributed.nn.all_gather(x), dim=0) if world > 1 else x


def simclr_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent over all ranks' views (SLIP's SIMCLRLoss): each view must find its twin among 2N-1."""
    rank, _ = rank_and_world()
    q1, q2 = F.normalize(z1.float(), dim=-1), F.normalize(z2.float(), dim=-1)
    k1, k2 = _gather_with_grad(q1), _gather_with_grad(q2)
    n = q1.shape[0]
    labels = torch.arange(n, device=q1.device) + rank * n
    self_mask = F.one_hot(labels, k1.shape[0]).to(q1.dtype) * 1e9
    logits_11 = q1 @ k1.T / temperature - self_mask
    logits_22 = q2 @ k2.T / temperature - self_mask
    logits_12, logits_21 = q1 @ k2.T / temperature, q2 @ k1.T / temperature
    loss_1 = F.cross_entropy(torch.cat([logits_12, logits_11], dim=1), labels)
    loss_2 = F.cross_entropy(torch.cat([logits_21, logits_22], dim=1), labels)
    return (loss_1 + loss_2) / 2


@dataclass
class SlipTransform:
    """One CLIP view + caption, and two SimCLR views of the same image."""

    clip_view: ImageView
    ssl_view: ImageView
    tokenize: Tokenize

    def __call__(self, sample: Sample, generator: torch.Generator) -> dict[str, torch.Tensor]:
        image = sample.image
        return {"image": self.clip_view(image, generator), "text": self.tokenize(sample.caption),
                "view1": self.ssl_view(image, generator), "view2": self.ssl_view(image, generator)}


class SlipObjective(ClipTraining):
    """CLIP + weighted SimCLR. Batch: image, text, view1, view2."""

    name: ClassVar[str] = "slip"
    needs: ClassVar[frozenset[str]] = frozenset({"caption"})
    Options: ClassVar[type] = SlipOptions

    def __init__(self, bundle: Any, options: SlipOptions | None = None, info: DataInfo | None = None,
                 total_steps: int = 1) -> None:
        super().__init__()
        model = bundle.model
        self.model, self.tokenizer = model, bundle.tokenizer
        self.options = opts = options or SlipOptions()
        embed_dim = int(model.text_projection.shape[1]) if hasattr(model, "text_projection") else \
            int(model.visual.output_dim)
        self.head = mlp_head(embed_dim, opts.mlp_dim, opts.out_dim)

    def exported_model(self) -> nn.Module:
        return self.model

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        o = self.options
        image = self.model.encode_image(batch["image"], normalize=True)
        text = self.model.encode_text(batch["text"], normalize=True)
        scale = self.model.logit_scale.exp()
        clip = contrastive_loss(image, text, scale, o.local_loss, o.gather_with_grad)
        views = self.model.encode_image(torch.cat([batch["view1"], batch["view2"]]))
        z1, z2 = self.head(views.float()).chunk(2)
        ssl = simclr_loss(z1, z2, o.ssl_temperature)
        return {"loss": clip + o.ssl_weight * ssl, "clip_loss": clip.detach(), "ssl_loss": ssl.detach(),
                "logit_scale": scale.detach()}

    @torch.no_grad()
    def after_step(self, step: int) -> None:
        self.model.logit_scale.clamp_(0, math.log(self.options.max_logit_scale))

    def sample_transform(self) -> SampleTransform:
        size, mean, std = model_image_stats(self.model)
        o = self.options
        clip_view = ImageView(size, scale=tuple(float(x) for x in o.clip_crop_scale), mean=mean, std=std)
        ssl_view = ImageView(size, scale=tuple(float(x) for x in o.ssl_crop_scale), flip=True,
                             color_jitter=o.color_jitter, mean=mean, std=std)
        return SlipTransform(clip_view, ssl_view, Tokenize(self.tokenizer))
