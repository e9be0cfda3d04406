"""GroupViT's training: image-caption InfoNCE plus the multi-label contrastive loss (Xu et al. 2022, §3.3).

For each caption, nouns are extracted (``data.nouns``: offline rules, no tagger download), up to ``multi_label``
of them are drawn with the sample's seeded generator and put into a prompt ("a photo of a {noun}."); a caption
with fewer nouns is padded with the caption itself, as GroupViT's data pipeline does. The image is then contrasted
against every prompt of the batch with soft targets (1/K on each of its own K prompts), and each prompt against
every image (its own is the positive). Made for GroupViT, it trains any open_clip-like model.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import torch
import torch.nn.functional as F
from open_clip.loss import gather_features
from torch import nn

from ..data.nouns import extract_nouns
from ..data.sample import Sample
from ..errors import ConfigError
from ..models.groupvit import GroupViTVision, grouping_stats
from .base import ClipTraining, DataInfo, SampleTransform, rank_and_world
from .clip import contrastive_loss
from .views import ImageView, Tokenize, model_image_stats


#: what a noun prompt is scored against in the multi-label loss (see GroupViTOptions.multi_label_pool)
MULTI_LABEL_POOLS = ("image", "group")


@dataclass
class GroupViTOptions:
    """Options of the groupvit objective (``objective_args``).

    Args:
        multi_label: prompts per image in the multi-label loss (GroupViT: 3); 0 trains with InfoNCE alone.
        multi_label_weight: weight of the multi-label term (GroupViT: 1).
        prompt: the template a noun is put into ('{}' stands for the noun).
        max_noun_words: words kept per noun phrase, counted back from the head noun.
        local_loss / gather_with_grad: as clip's, for both terms (each rank scores its own rows against every
            rank's columns).
        max_logit_scale: clamp of exp(logit_scale), shared by both terms (GroupViT: 100).
        crop_scale: random-resized-crop area range.
        multi_label_pool: what a noun prompt is scored against: ``image`` (the paper: the image embedding, the
            mean of the final segments) or ``group`` (its best-matching final segment, max over groups - not in
            the paper; it rewards a noun for owning a segment, issue 34's remedy for collapsed grouping at small
            scale). ``group`` needs a GroupViT.
    """

    multi_label: int = 3
    multi_label_weight: float = 1.0
    prompt: str = "a photo of a {}."
    max_noun_words: int = 3
    local_loss: bool = True
    gather_with_grad: bool = True
    max_logit_scale: float = 100.0
    crop_scale: tuple[float, float] = (0.9, 1.0)
    multi_label_pool: str = "image"

    def __post_init__(self) -> None:
        if self.multi_label_pool not in MULTI_LABEL_POOLS:
            raise ConfigError(f"groupvit: multi_label_pool must be one of {list(MULTI_LABEL_POOLS)}, got "
                              f"{self.multi_label_pool!r}")
        if self.multi_label < 0 or self.max_noun_words < 1:
            raise ConfigError(f"groupvit: multi_label must be >= 0 and max_noun_words >= 1, got {self.multi_label} "
                              f"and {self.max_noun_words}")
        if "{}" not in self.prompt:
            raise ConfigError(f"groupvit: prompt {self.prompt!r} needs a '{{}}' for the noun")


def noun_prompts(caption: str, count: int, generator: torch.Generator, template: str = "a photo of a {}.",
                 max_words: int = 3) -> list[str]:
    """``count`` prompts: distinct nouns of the caption drawn by ``generator``, padded with the caption itself."""
    nouns = extract_nouns(caption, max_words)
    chosen = torch.randperm(len(nouns), generator=generator).tolist()[:count] if nouns else []
    return [template.format(nouns[i]) for i in chosen] + [caption] * (count - len(chosen))


@dataclass
class GroupViTTransform:
    """One view of the image, its tokenised caption and (K, L) tokenised noun prompts."""

    view: ImageView
    tokenize: Tokenize
    options: GroupViTOptions

    def __call__(self, sample: Sample, generator: torch.Generator) -> dict[str, torch.Tensor]:
        out = {"image": self.view(sample.image, generator), "text": self.tokenize(sample.caption)}
        if self.options.multi_label:
            prompts = noun_prompts(sample.caption, self.options.multi_label, generator, self.options.prompt,
                                   self.options.max_noun_words)
            out["prompts"] = self.tokenize.tokenizer(prompts)
        return out


def _similarity(images: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
    """(I, P) cosine of each image with each prompt; an image given as (I, G, D) segments takes its best one."""
    if images.dim() == 2:
        return images @ prompts.T
    return torch.einsum("igd,pd->igp", images, prompts).amax(dim=1)


def multi_label_loss(image: torch.Tensor, prompts: torch.Tensor, logit_scale: torch.Tensor,
                     local_loss: bool = True, gather_with_grad: bool = True) -> torch.Tensor:
    """GroupViT's multi-label contrastive loss over all ranks.

    Args:
        image: (B, D) unit-norm image embeddings of this rank, or (B, G, D) unit-norm segment embeddings, in which
            case an image's similarity to a prompt is that of its best-matching segment.
        prompts: (B, K, D) unit-norm embeddings of each image's K prompts.
        logit_scale: exp(logit_scale).

    Image -> prompts: soft cross-entropy against every prompt of the global batch, 1/K on the image's own K;
    prompt -> images: cross-entropy with its own image as the positive; the loss is their mean. With K = 1 it is
    CLIP's InfoNCE between images and prompts.
    """
    batch, k = prompts.shape[:2]
    flat = prompts.reshape(batch * k, -1).float()
    image = image.float()
    rank, world = rank_and_world()
    all_images, all_prompts = (image, flat) if world == 1 else gather_features(
        image, flat, local_loss=local_loss, gather_with_grad=gather_with_grad, rank=rank, world_size=world)
    own = rank * batch + torch.arange(batch, device=image.device)
    target = torch.zeros(batch, all_prompts.shape[0], device=image.device)
    columns = (own[:, None] * k + torch.arange(k, device=image.device)).reshape(batch, k)
    target.scatter_(1, columns, 1.0 / k)
    loss_image = F.cross_entropy(logit_scale * _similarity(image, all_prompts), target)
    loss_prompt = F.cross_entropy(logit_scale * _similarity(all_images, flat).T, own.repeat_interleave(k))
    return (loss_image + loss_prompt) / 2


class GroupViTObjective(ClipTraining):
    """GroupViT pretraining on captions (any open_clip-like model with encode_image / encode_text / logit_scale).

    Batch: ``{"image": (B,3,H,W), "text": (B,L), "prompts": (B,K,L)}`` (no prompts when ``multi_label`` is 0).
    """

    name: ClassVar[str] = "groupvit"
    needs: ClassVar[frozenset[str]] = frozenset({"caption"})
    Options: ClassVar[type] = GroupViTOptions
    #: a collapsing grouping shows in the progress line (groups per image at each stage, see grouping_stats)
    progress_keys: ClassVar[tuple[str, ...]] = ("groups_s1", "groups_s2")

    def __init__(self, bundle: Any, options: GroupViTOptions | None = None, info: DataInfo | None = None,
                 total_steps: int = 1) -> None:
        super().__init__()
        model = bundle.model
        self.model, self.tokenizer = model, bundle.tokenizer
        self.options = options or GroupViTOptions()
        self.total_steps = total_steps
        if self.options.multi_label_pool == "group" and not isinstance(getattr(model, "visual", None), GroupViTVision):
            raise ConfigError(f"groupvit: multi_label_pool=group scores nouns against GroupViT's segments; "
                              f"{bundle.name} is not a GroupViT (use multi_label_pool=image)")

    def exported_model(self) -> nn.Module:
        return self.model

    def _encode_image(self, images: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, torch.Tensor]]:
        """Unit-norm image embeddings, for a GroupViT its (B, G, D) unit-norm final segments and its grouping
        statistics (logged with the losses)."""
        visual = getattr(self.model, "visual", None)
        if not isinstance(visual, GroupViTVision):
            return self.model.encode_image(images, normalize=True), None, {}
        out = visual.forward_groups(images)
        segments = F.normalize(visual.proj(out.tokens), dim=-1) if self.options.multi_label_pool == "group" else None
        return F.normalize(visual.embed(out), dim=-1), segments, grouping_stats(out)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        opts = self.options
        image, segments, stats = self._encode_image(batch["image"])
        texts = batch["text"]
        if opts.multi_label:   # captions and prompts in one pass through the text tower
            texts = torch.cat([texts, batch["prompts"].flatten(0, 1)])
        text = self.model.encode_text(texts, normalize=True)
        caption, prompts = text[:len(image)], text[len(image):]
        scale = self.model.logit_scale.exp()
        clip = contrastive_loss(image, caption, scale, opts.local_loss, opts.gather_with_grad)
        out = {"clip_loss": clip.detach(), "logit_scale": scale.detach(), **stats}
        loss = clip
        if opts.multi_label:
            label = multi_label_loss(image if segments is None else segments,
                                     prompts.reshape(len(image), opts.multi_label, -1), scale,
                                     opts.local_loss, opts.gather_with_grad)
            loss = loss + opts.multi_label_weight * label
            out["multi_label_loss"] = label.detach()
        return {"loss": loss, **out}

    @torch.no_grad()
    def after_step(self, step: int) -> None:
        """Clamp the temperature at max_logit_scale (GroupViT clamps exp(logit_scale) at 100)."""
        self.model.logit_scale.clamp_(0, math.log(self.options.max_logit_scale))

    def sample_transform(self) -> SampleTransform:
        size, mean, std = model_image_stats(self.model)
        view = ImageView(size, scale=tuple(float(x) for x in self.options.crop_scale), mean=mean, std=std)
        return GroupViTTransform(view, Tokenize(self.tokenizer), self.options)

    def describe(self) -> dict[str, Any]:
        """Resolved options, for the run's config."""
        return dict(vars(self.options))
