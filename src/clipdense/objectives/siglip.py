"""SigLIP: pairwise sigmoid loss with learnable temperature and bias.

Zhai et al. 2023, "Sigmoid Loss for Language Image Pre-Training". The loss is open_clip's
``SigLipLoss``; across ranks it exchanges text features with the neighbouring ranks
("bidir" ring exchange, with gradients) instead of materialising the global B x B matrix.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import torch
from open_clip.loss import SigLipLoss
from torch import nn

from .base import ClipTraining, DataInfo, SampleTransform, rank_and_world
from .views import ImageTextTransform, ImageView, Tokenize, model_image_stats


@dataclass
class SigLipOptions:
    """Options of the siglip objective.

    Args:
        init_temperature: t' with logit scale t = exp(t'); log(10) as SigLIP §3.3 ("t' = log 10").
        init_bias: b = -10 as SigLIP §3.3 (keeps the initial loss near the true negatives' prior).
        reset_temperature: re-initialise t' and b even when the model already has a logit bias
            (a SigLIP checkpoint keeps its learnt values by default).
        dist_impl: open_clip's exchange scheme across ranks: bidir (default), shift, reduce, gather.
        max_logit_scale: clamp of exp(t'), 100 as CLIP's guard against blow-up (SigLIP leaves t free;
            the clamp is inactive at realistic values ~ 10-30).
        crop_scale: random-resized-crop area range (open_clip's training transform).
    """

    init_temperature: float = math.log(10.0)
    init_bias: float = -10.0
    reset_temperature: bool = False
    dist_impl: str = "bidir"
    max_logit_scale: float = 100.0
    crop_scale: tuple[float, float] = (0.9, 1.0)


def attach_logit_bias(model: nn.Module, init_temperature: float, init_bias: float, reset: bool = False) -> None:
    """Give ``model`` SigLIP's learnable bias (a CLIP model has none) and SigLIP's initial t' and b; a model
    that already has a bias keeps its learnt values unless ``reset``."""
    fresh = getattr(model, "logit_bias", None) is None
    if fresh:
        model.logit_bias = nn.Parameter(torch.zeros((), device=model.logit_scale.device))
    if fresh or reset:
        with torch.no_grad():
            model.logit_scale.fill_(init_temperature)
            model.logit_bias.fill_(init_bias)


def sigmoid_loss(image: torch.Tensor, text: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor,
                 dist_impl: str = "bidir") -> torch.Tensor:
    """open_clip's SigLipLoss over all ranks (unit-norm fp32 features). Each rank sums its rows over all ranks'
    texts / local batch; the mean over ranks (DDP's gradient average) equals the single-process loss."""
    rank, world = rank_and_world()
    return SigLipLoss(rank=rank, world_size=world, dist_impl=dist_impl)(image.float(), text.float(), scale.float(),
                                                                        bias.float())


class SigLipObjective(ClipTraining):
    """Sigmoid image-text loss. Batch: ``{"image": (B,3,H,W), "text": (B,L)}``.

    A CLIP model without a ``logit_bias`` gets one (saved with the weights; the checkpoint's
    model config records ``init_logit_bias`` so ``load_model`` rebuilds the same architecture).
    """

    name: ClassVar[str] = "siglip"
    needs: ClassVar[frozenset[str]] = frozenset({"caption"})
    Options: ClassVar[type] = SigLipOptions

    def __init__(self, bundle: Any, options: SigLipOptions | None = None, info: DataInfo | None = None,
                 total_steps: int = 1) -> None:
        super().__init__()
        model = bundle.model
        self.model, self.tokenizer = model, bundle.tokenizer
        self.options = o = options or SigLipOptions()
        attach_logit_bias(model, o.init_temperature, o.init_bias, o.reset_temperature)

    def exported_model(self) -> nn.Module:
        return self.model

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        image = self.model.encode_image(batch["image"], normalize=True).float()
        text = self.model.encode_text(batch["text"], normalize=True).float()
        scale, bias = self.model.logit_scale.exp().float(), self.model.logit_bias.float()
        loss = sigmoid_loss(image, text, scale, bias, self.options.dist_impl)
        return {"loss": loss, "siglip_loss": loss.detach(), "logit_scale": scale.detach(),
                "logit_bias": bias.detach()}

    @torch.no_grad()
    def after_step(self, step: int) -> None:
        self.model.logit_scale.clamp_(max=math.log(self.options.max_logit_scale))

    def sample_transform(self) -> SampleTransform:
        size, mean, std = model_image_stats(self.model)
        view = ImageView(size, scale=tuple(float(x) for x in self.options.crop_scale), mean=mean, std=std)
        return ImageTextTransform(view, Tokenize(self.tokenizer))
