"""AudioCLIP: an audio tower trained into a CLIP's joint space with three pairwise contrastive losses.

Guzhov, Raue, Hees, Dengel 2021, "AudioCLIP: Extending CLIP to Image, Text and Audio". For each pair of
modalities present in the batch (audio-image, audio-text, image-text) the symmetric cross-entropy of the scaled cosine
logits against the diagonal; audio pairs have their own learnt temperatures (exp clamped to [1, 100]), the image-text
pair uses the CLIP's. Normalisation: each pair's loss is the mean of its two directions (open_clip's ``ClipLoss``,
which also gathers across ranks), and the total is the mean over the pairs present, so with only image and text the
loss *is* CLIP's. (AudioCLIP's code sums directions and divides by the number of pairs, i.e. twice this; the factor
does not change Adam's steps.)

Regimes: ``partial`` trains the audio tower and its temperatures only; the CLIP is frozen and never saved in
``state.pt``, so its image and text embeddings stay bit-identical and every head on it keeps working. ``full`` trains
all three towers. The export is an ``audio/audioclip`` head (``heads/audio.py``) bound to the CLIP's fingerprint.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import torch
from open_clip.loss import ClipLoss
from torch import nn

from ..data.audio import AudioCompose, CropPad, Gain, Noise, TimeShift, conform
from ..data.sample import Sample
from ..errors import ConfigError
from ..heads.audio import AudioHead
from ..models.audio import build_audio_tower
from ..models.towers import tower_facts
from .base import ClipTraining, DataInfo, HeadExport, SampleTransform, rank_and_world
from .views import ImageView, Tokenize, model_image_stats

REGIMES = ("partial", "full")
PAIRS = ("audio_image", "audio_text", "image_text")


@dataclass
class AudioClipOptions:
    """Options of the audioclip objective (``--objective-arg KEY=VALUE``).

    Args:
        regime: ``partial`` (only the audio tower trains) or ``full`` (all three towers).
        tower: audio tower preset (``models.audio.AUDIO_TOWERS``: tiny, tiny-logmel, esresnext-fbsp-50).
        frontend: override the preset's front end (``fbsp`` or ``logmel``; empty: the preset's).
        image_text: include the image-text term (it only moves weights in the full regime).
        crop_scale: random-resized-crop area range of the image view.
        gain_db: random gain range of the sound (decibels).
        shift: circular time shift, as a fraction of the clip.
        noise_snr: white noise added at an SNR drawn from this range (dB); (0, 0) turns it off.
        tower_seed: seed of the audio tower's initialisation.
    """

    regime: str = "partial"
    tower: str = "tiny"
    frontend: str = ""
    image_text: bool = True
    crop_scale: tuple[float, float] = (0.9, 1.0)
    gain_db: tuple[float, float] = (-6.0, 6.0)
    shift: float = 0.1
    noise_snr: tuple[float, float] = (15.0, 40.0)
    tower_seed: int = 0


def pair_loss(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE of one pair (unit-norm features, exponentiated scale), gathered across ranks."""
    rank, world = rank_and_world()
    return ClipLoss(local_loss=True, gather_with_grad=True, rank=rank, world_size=world)(
        a.float(), b.float(), scale.float())


def audioclip_loss(features: dict[str, torch.Tensor], scales: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``{"loss": mean over present pairs, "<pair>_loss": ...}`` from unit-norm ``features`` by modality
    (``audio`` / ``image`` / ``text``) and exponentiated ``scales`` by pair name (``audio_image`` ...)."""
    out: dict[str, torch.Tensor] = {}
    for pair in PAIRS:
        first, second = pair.split("_")
        if first in features and second in features and pair in scales:
            out[f"{pair}_loss"] = pair_loss(features[first], features[second], scales[pair])
    if not out:
        raise ConfigError("audioclip: no pair of modalities to contrast (need two of audio, image, text)")
    return {"loss": torch.stack(list(out.values())).mean(), **out}


@dataclass
class AudioTripletTransform:
    """One sample -> image view, tokens, and a fixed-length sound window at the tower's rate, augmented."""

    view: ImageView
    tokenize: Tokenize
    audio: AudioCompose
    sample_rate: int

    def __call__(self, sample: Sample, generator: torch.Generator) -> dict[str, torch.Tensor]:
        samples = conform(sample.audio, self.sample_rate, f"sound {sample.key}")
        return {"image": self.view(sample.image, generator), "text": self.tokenize(sample.caption),
                "audio": self.audio(samples, generator).float()}


class AudioClipObjective(ClipTraining):
    """An audio tower beside a CLIP, trained on image-sound-text triplets.

    Batch: ``{"image": (B,3,H,W), "text": (B,L), "audio": (B,T)}``.
    """

    name: ClassVar[str] = "audioclip"
    needs: ClassVar[frozenset[str]] = frozenset({"caption", "audio"})
    Options: ClassVar[type] = AudioClipOptions

    def __init__(self, bundle: Any, options: AudioClipOptions | None = None, info: DataInfo | None = None,
                 total_steps: int = 1) -> None:
        super().__init__()
        self.options = options or AudioClipOptions()
        if self.options.regime not in REGIMES:
            raise ConfigError(f"--objective-arg regime={self.options.regime}: expected one of {list(REGIMES)}")
        self.bundle, self.model, self.tokenizer = bundle, bundle.model, bundle.tokenizer
        overrides = {"frontend": self.options.frontend} if self.options.frontend else {}
        tower = build_audio_tower(self.options.tower, tower_facts(self.model).output_dim,
                                  seed=self.options.tower_seed, **overrides)
        self.full = self.options.regime == "full"
        self.head = AudioHead(tower, self.model if self.full else None)
        if not self.full:
            self.model.requires_grad_(False)

    def exported_model(self) -> nn.Module:
        return self.head

    def exported_head(self) -> HeadExport:
        return HeadExport(self.head, self.bundle)

    def frozen_modules(self) -> Sequence[nn.Module]:
        return () if self.full else (self.model,)

    def lock_blocks(self, image_blocks: int, text_blocks: int) -> None:
        if not self.full:
            super(ClipTraining, self).lock_blocks(image_blocks, text_blocks)
            return
        super().lock_blocks(image_blocks, text_blocks)

    def train(self, mode: bool = True) -> "AudioClipObjective":
        super().train(mode)
        if not self.full:
            self.model.eval()   # a frozen CLIP computes exactly what it computes at inference
        return self

    def encode(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Unit-norm features of every modality in the batch (the CLIP's without a graph when frozen)."""
        features = {"audio": self.head.encode_audio(batch["audio"])}
        with torch.set_grad_enabled(self.full and torch.is_grad_enabled()):
            if "image" in batch:
                features["image"] = self.model.encode_image(batch["image"], normalize=True)
            if "text" in batch:
                features["text"] = self.model.encode_text(batch["text"], normalize=True)
        return features

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        features = self.encode(batch)
        audio_image, audio_text = self.head.scales()
        scales = {"audio_image": audio_image, "audio_text": audio_text}
        if self.options.image_text:
            scales["image_text"] = self.model.logit_scale.exp().clamp(max=100.0)
        losses = audioclip_loss(features, scales)
        logged = {k: v.detach() for k, v in losses.items() if k != "loss"}
        return {"loss": losses["loss"], **logged, "scale_audio_image": audio_image.detach(),
                "scale_audio_text": audio_text.detach()}

    def sample_transform(self) -> SampleTransform:
        size, mean, std = model_image_stats(self.model)
        config, o = self.head.config, self.options
        ops = [CropPad(config.clip_samples), Gain(tuple(o.gain_db)), TimeShift(o.shift)]
        if o.noise_snr[1] > 0:
            ops.append(Noise(tuple(o.noise_snr)))
        view = ImageView(size, scale=tuple(float(x) for x in o.crop_scale), mean=mean, std=std)
        return AudioTripletTransform(view, Tokenize(self.tokenizer), AudioCompose(ops), config.sample_rate)

    def describe(self) -> dict[str, Any]:
        return dict(vars(self.options))
