"""ActionCLIP: action recognition as video-text matching, so actions never trained on can be named.

Wang, Xing, Liu 2021, "ActionCLIP: A New Paradigm for Video Action Recognition". A clip's frames go through the CLIP
image tower and a temporal fusion (the paper's "post-network prompt" Transf: a 6-layer temporal transformer with
frame positions, residual, mean; ``heads/video.py`` seqTransf with a random start); each clip's label becomes text
through one of 16 prompt templates drawn at random per sample (all 16 averaged at test, ``tasks/video.py``). Several
clips of a batch can share a class, so the target is not the identity: the loss is the KL divergence between the
softmax of the similarity rows and the batch's same-class matrix (softmax of 10 x the 0/1 matrix, as the paper's
code), mean over elements times the batch size, averaged over the video->text and text->video directions.

Batch: ``{"video": (B, T, 3, S, S), "text": (B, L), "label": (B,)}``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..data.sample import Sample
from ..errors import ConfigError
from ..heads.video import POOLINGS
from .base import DataInfo, SampleTransform
from .video_common import VideoTraining, VideoView, encode_frames
from .views import Tokenize, model_image_stats

#: ActionCLIP's 16 text templates (its ``text_prompt``): one drawn per sample in training, all averaged at test
ACTION_TEMPLATES: tuple[str, ...] = (
    "a photo of action {}.", "a picture of action {}.", "Human action of {}.", "{}, an action.",
    "{} this is an action.", "{}, a video of action.", "Playing action of {}.", "{}.",
    "Playing a kind of action, {}.", "Doing a kind of action, {}.", "Look, the human is {}.",
    "Can you recognize the action of {}?", "Video classification of {}.", "A video of {}.", "The man is {}.",
    "The woman is {}.")
#: the same number of templates for the shapes of the video world (its actors are things, not people)
WORLD_TEMPLATES: tuple[str, ...] = (
    "a shape {}.", "a thing {}.", "something {}.", "a video of a shape that {}.", "a clip where a thing {}.",
    "look, the shape {}.", "the object {}.", "an object {}.", "a coloured shape {}.", "a figure {}.",
    "a small shape {}.", "a video: a thing {}.", "watch a shape that {}.", "one shape {}.", "a thing that {}.",
    "{}.")
TEMPLATE_SETS = {"actionclip": ACTION_TEMPLATES, "world": WORLD_TEMPLATES}


def same_class_matrix(labels: torch.Tensor) -> torch.Tensor:
    """(B, B) float: 1 where clips i and j share a class (ActionCLIP's ``gen_label``)."""
    return (labels[:, None] == labels[None, :]).float()


def kl_match(logits: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """ActionCLIP's KLLoss: KLDivLoss(log_softmax(logits), softmax(10 * truth)), mean over the B x B elements,
    times B, i.e. the mean over rows of each row's KL(target || prediction)."""
    target = F.softmax(truth * 10.0, dim=1)
    elementwise = target * (torch.log(target) - F.log_softmax(logits.float(), dim=1))
    return elementwise.mean() * logits.shape[0]


def actionclip_loss(video: torch.Tensor, text: torch.Tensor, labels: torch.Tensor,
                    scale: torch.Tensor) -> torch.Tensor:
    """Mean of the video->text and text->video KL losses of unit-norm embeddings scored by ``scale`` x cosine."""
    logits = scale * video.float() @ text.float().t()
    truth = same_class_matrix(labels)
    return 0.5 * (kl_match(logits, truth) + kl_match(logits.t(), truth))


@dataclass
class ActionClipOptions:
    """Options of the actionclip objective (``--objective-arg KEY=VALUE``).

    Args:
        fusion: temporal fusion: meanP or seqTransf (the paper's Transf), seqLSTM.
        layers: temporal transformer blocks (6 in the paper).
        max_frames: frame position embeddings.
        templates: ``actionclip`` (the paper's 16) or ``world`` (16 for the video world's shapes).
        clip: ``tune`` (at coef_lr x lr) or ``frozen``.
        coef_lr: the CLIP's learning-rate factor (the paper trains CLIP at 1/10 of the fusion's rate).
        crop_scale: random-resized-crop area range (one window for every frame).
    """

    fusion: str = "seqTransf"
    layers: int = 6
    max_frames: int = 32
    templates: str = "actionclip"
    clip: str = "tune"
    coef_lr: float = 0.1
    crop_scale: tuple[float, float] = (0.9, 1.0)


@dataclass
class ActionPromptTransform:
    """One sample -> the clip's view, its label, and its class name in a template drawn from the generator."""

    view: VideoView
    tokenize: Tokenize
    classes: Sequence[str]
    templates: Sequence[str]

    def __call__(self, sample: Sample, generator: torch.Generator) -> dict[str, torch.Tensor]:
        video = self.view(sample.frames, generator)
        template = self.templates[int(torch.randint(len(self.templates), (), generator=generator))]
        label = int(sample.image_label)
        return {"video": video, "text": self.tokenize(template.format(self.classes[label])),
                "label": torch.tensor(label)}


class ActionClipObjective(VideoTraining):
    """Video-text matching on labelled clips with the same-class KL loss."""

    name: ClassVar[str] = "actionclip"
    needs: ClassVar[frozenset[str]] = frozenset({"frames", "image_label"})
    Options: ClassVar[type] = ActionClipOptions

    def __init__(self, bundle: Any, options: ActionClipOptions | None = None, info: DataInfo | None = None,
                 total_steps: int = 1) -> None:
        super().__init__()
        o = self.options = options or ActionClipOptions()
        if o.fusion not in POOLINGS or o.fusion == "tightTransf":
            raise ConfigError(f"--objective-arg fusion={o.fusion}: expected one of meanP, seqLSTM, seqTransf")
        if o.templates not in TEMPLATE_SETS:
            raise ConfigError(f"--objective-arg templates={o.templates}: expected one of {sorted(TEMPLATE_SETS)}")
        if info is None or not info.classes:
            raise ConfigError("actionclip needs labelled clips with class names (e.g. --data kinetics:root=DIR)")
        self.classes = list(info.classes)
        self._attach_head(bundle, o.fusion, from_text=False)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        with torch.set_grad_enabled(self.tuned and torch.is_grad_enabled()):
            frames = encode_frames(self.model, batch["video"])
            text = self.model.encode_text(batch["text"], normalize=True)
        scale = self.model.logit_scale.exp().clamp(max=100.0)
        loss = actionclip_loss(self.head.pool(frames), text, batch["label"], scale)
        return {"loss": loss, "actionclip_loss": loss.detach()}

    def sample_transform(self) -> SampleTransform:
        size, mean, std = model_image_stats(self.model)
        view = VideoView(size, scale=tuple(float(x) for x in self.options.crop_scale), mean=mean, std=std)
        return ActionPromptTransform(view, Tokenize(self.tokenizer), self.classes,
                                     TEMPLATE_SETS[self.options.templates])

    def describe(self) -> dict[str, Any]:
        return dict(vars(self.options))
