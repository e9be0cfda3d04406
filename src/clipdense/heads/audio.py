"""An AudioCLIP audio tower as a head file bound to the CLIP it was trained against.

Why a head and not a three-tower model: in the ``partial`` regime (the published recipe's first stage) the CLIP never
changes, so the audio tower is only meaningful next to those exact weights. The head format already records the
backbone's name, tag and weights fingerprint and refuses other weights in one line; the CLIP stays an ordinary
``load_model`` file that every existing head and tool keeps using. In the ``full`` regime the CLIP's tensors change
too: the head then also carries the tuned CLIP (``clip``), bound to the weights it started from, as Cat-Seg's head
carries its tuned tensors.

Kind ``audio/audioclip``: ``AudioHead(tower, logit scales for audio-image and audio-text[, clip])``.
"""
from __future__ import annotations

import copy
import math
from typing import Any, Mapping

import torch
from torch import nn

from ..models.audio import AudioTower, AudioTowerConfig, audio_tower_config
from .registry import HeadKind, register_head_kind

KIND = "audio/audioclip"
#: exp(logit scale) is clamped to [1, 100] as in AudioCLIP's code
MAX_LOGIT_SCALE = 100.0


class AudioHead(nn.Module):
    """The audio side of an AudioCLIP: the tower and its two learnt temperatures (+ the tuned CLIP, full regime).

    Args:
        tower: the audio tower (its ``embed_dim`` is the CLIP's joint dimension).
        clip: the CLIP trained with it (full regime) or None (partial: the backbone bundle's CLIP is used as is).
    """

    def __init__(self, tower: AudioTower, clip: nn.Module | None = None) -> None:
        super().__init__()
        self.tower = tower
        self.logit_scale_audio_image = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.logit_scale_audio_text = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.clip = clip

    @property
    def config(self) -> AudioTowerConfig:
        return self.tower.config

    def scales(self) -> tuple[torch.Tensor, torch.Tensor]:
        """exp of the audio-image and audio-text logit scales, clamped to [1, 100]."""
        return (self.logit_scale_audio_image.exp().clamp(1.0, MAX_LOGIT_SCALE),
                self.logit_scale_audio_text.exp().clamp(1.0, MAX_LOGIT_SCALE))

    def encode_audio(self, samples: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """(B, T) waveforms at the tower's rate -> (B, D) embeddings."""
        features = self.tower(samples)
        return nn.functional.normalize(features, dim=-1) if normalize else features

    def clip_model(self, bundle: Any) -> nn.Module:
        """The CLIP this tower lives beside: its own (full regime) or the backbone's."""
        return self.clip if self.clip is not None else bundle.model


def _build(config: Mapping[str, Any], bundle: Any, classes: list[str] | None) -> AudioHead:
    tower = AudioTower(audio_tower_config(dict(config["tower"])))
    return AudioHead(tower, copy.deepcopy(bundle.model) if config.get("full") else None)


def _config_of(head: nn.Module) -> dict[str, Any]:
    return {"tower": head.tower.config.to_dict(), "full": head.clip is not None}


register_head_kind(HeadKind(KIND, AudioHead, _build, _config_of))
