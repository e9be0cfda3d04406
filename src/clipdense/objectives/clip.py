"""CLIP: symmetric InfoNCE between image and text embeddings with a learnable, clamped temperature.

Radford et al. 2021, "Learning Transferable Visual Models From Natural Language Supervision".
The loss itself is open_clip's ``ClipLoss`` (same gather semantics across ranks).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import torch
from open_clip.loss import ClipLoss
from torch import nn

from .base import ClipTraining, DataInfo, SampleTransform, rank_and_world
from .views import ImageTextTransform, ImageView, Tokenize, model_image_stats


@dataclass
class ClipOptions:
    """Options of the clip objective (``objective_args`` in the run config).

    Args:
        local_loss: each rank scores its own images/texts against the gathered other side
            (O(B_local x B) memory instead of O(B^2)); the loss and gradients are the same.
        gather_with_grad: backpropagate through the all-gather. With it, DDP's gradient equals
            the single-process gradient of the global batch; without it, it is 1/world_size of it
            (open_clip's default behaviour), which Adam mostly absorbs.
        max_logit_scale: clamp of exp(logit_scale); 100 as in CLIP §2.5.
        crop_scale: random-resized-crop area range; (0.9, 1.0) as open_clip's training transform.
    """

    local_loss: bool = True
    gather_with_grad: bool = True
    max_logit_scale: float = 100.0
    crop_scale: tuple[float, float] = (0.9, 1.0)


def contrastive_loss(image: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor,
                     local_loss: bool = True, gather_with_grad: bool = True) -> torch.Tensor:
    """open_clip's ClipLoss over all ranks' features (unit-norm inputs, scale already exponentiated).

    Features are cast to fp32 first: under bf16 autocast the B x B logits lose the small
    differences the softmax needs.
    """
    rank, world = rank_and_world()
    loss = ClipLoss(local_loss=local_loss, gather_with_grad=gather_with_grad, rank=rank, world_size=world)
    return loss(image.float(), text.float(), logit_scale.float())


class ClipObjective(ClipTraining):
    """Contrastive image-text pretraining of an open_clip model.

    Batch: ``{"image": (B,3,H,W), "text": (B,L) token ids}``.
    """

    name: ClassVar[str] = "clip"
    needs: ClassVar[frozenset[str]] = frozenset({"caption"})
    Options: ClassVar[type] = ClipOptions

    def __init__(self, bundle: Any, options: ClipOptions | None = None, info: DataInfo | None = None,
                 total_steps: int = 1) -> None:
        super().__init__()
        model = bundle.model
        self.model, self.tokenizer = model, bundle.tokenizer
        self.options = options or ClipOptions()
        self.total_steps = total_steps

    def exported_model(self) -> nn.Module:
        return self.model

    def encode(self, images: torch.Tensor, texts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Unit-norm image and text embeddings."""
        return self.model.encode_image(images, normalize=True), self.model.encode_text(texts, normalize=True)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        image, text = self.encode(batch["image"], batch["text"])
        scale = self.model.logit_scale.exp()
        loss = contrastive_loss(image, text, scale, self.options.local_loss, self.options.gather_with_grad)
        return {"loss": loss, "clip_loss": loss.detach(), "logit_scale": scale.detach()}

    @torch.no_grad()
    def after_step(self, step: int) -> None:
        """Clamp the temperature so logits are scaled by at most max_logit_scale (CLIP §2.5)."""
        self.model.logit_scale.clamp_(0, math.log(self.options.max_logit_scale))

    def sample_transform(self) -> SampleTransform:
        size, mean, std = model_image_stats(self.model)
        view = ImageView(size, scale=tuple(float(x) for x in self.options.crop_scale), mean=mean, std=std)
        return ImageTextTransform(view, Tokenize(self.tokenizer))

    def describe(self) -> dict[str, Any]:
        """Resolved options, for the run's config."""
        return dict(vars(self.options))
