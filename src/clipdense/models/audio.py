"""The audio tower that sits beside a CLIP's image and text towers (AudioCLIP, Guzhov et al. 2021).

ESResNeXt-style: a front end turns the waveform into a log time-frequency map (AudioCLIP's learnable FBSP, or a plain
log-mel), an input BatchNorm standardises it, and a ResNeXt (bottleneck blocks with grouped 3x3 convolutions, He et
al. / Xie et al.) maps it to one vector, projected to the CLIP's joint dimension. Architectures are data
(``AudioTowerConfig``): ``tiny`` trains on a CPU in minutes; ``esresnext-fbsp-50`` is the published shape (ResNeXt-50
32x4d over FBSP at 44.1 kHz, 2048-point frames hopping 561 samples, 1024-d).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import nn

from ..errors import ConfigError
from .audio_frontends import FBSP, LogMel

FRONTENDS = ("fbsp", "logmel")


@dataclass(frozen=True)
class AudioTowerConfig:
    """An audio tower's architecture (saved as JSON with its weights).

    Args:
        embed_dim: output dimension (the CLIP's joint dimension).
        sample_rate: Hz the tower reads; other rates are resampled first.
        clip_seconds: the window a sound is cropped / padded to.
        frontend: ``fbsp`` (learnable) or ``logmel``.
        n_fft, hop: frame length and hop in samples.
        bands: front-end output channels (FBSP filters or mel bands).
        stem: channels of the stem convolution.
        widths: output channels of each ResNeXt stage (each stage halves time and frequency but the first).
        blocks: bottleneck blocks per stage.
        cardinality, group_width: groups of the 3x3 convolution and channels per group in the first stage (doubling
            per stage, as ResNeXt's 32x4d).
        big_stem: a 7x7 stride-2 convolution + max-pool stem (ResNet's) instead of a 3x3 stride-1 one.
    """

    embed_dim: int = 64
    sample_rate: int = 16000
    clip_seconds: float = 2.0
    frontend: str = "fbsp"
    n_fft: int = 512
    hop: int = 256
    bands: int = 64
    stem: int = 16
    widths: tuple[int, ...] = (32, 64, 128)
    blocks: tuple[int, ...] = (1, 1, 1)
    cardinality: int = 4
    group_width: int = 4
    big_stem: bool = False

    def validate(self) -> None:
        if self.frontend not in FRONTENDS:
            raise ConfigError(f"frontend: expected one of {list(FRONTENDS)}, got {self.frontend!r}")
        if len(self.widths) != len(self.blocks) or not self.widths:
            raise ConfigError(f"widths {self.widths} and blocks {self.blocks}: expected one width per stage")
        if self.hop < 1 or self.n_fft < 16 or self.bands < 1 or self.embed_dim < 1:
            raise ConfigError("n_fft >= 16, hop >= 1, bands >= 1 and embed_dim >= 1 expected")

    @property
    def clip_samples(self) -> int:
        return int(round(self.clip_seconds * self.sample_rate))

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "AudioTowerConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"audio tower config: unknown key(s) {unknown}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**values)


AUDIO_TOWERS: dict[str, AudioTowerConfig] = {
    "tiny": AudioTowerConfig(),
    "tiny-logmel": AudioTowerConfig(frontend="logmel"),
    "esresnext-fbsp-50": AudioTowerConfig(embed_dim=1024, sample_rate=44100, clip_seconds=5.0, n_fft=2048, hop=561,
                                          bands=1025, stem=64, widths=(256, 512, 1024, 2048), blocks=(3, 4, 6, 3),
                                          cardinality=32, group_width=4, big_stem=True),
}


def audio_tower_config(name_or_config: str | AudioTowerConfig | Mapping[str, Any], embed_dim: int | None = None,
                       **overrides: Any) -> AudioTowerConfig:
    """A named preset (``AUDIO_TOWERS``) or a config, with ``embed_dim`` and other fields overridden."""
    if isinstance(name_or_config, str):
        if name_or_config not in AUDIO_TOWERS:
            raise ConfigError(f"audio tower {name_or_config!r}: expected one of {sorted(AUDIO_TOWERS)}")
        config = AUDIO_TOWERS[name_or_config]
    elif isinstance(name_or_config, AudioTowerConfig):
        config = name_or_config
    else:
        config = AudioTowerConfig.from_dict(name_or_config)
    if embed_dim is not None:
        overrides["embed_dim"] = embed_dim
    config = dataclasses.replace(config, **overrides)
    config.validate()
    return config


class Bottleneck(nn.Module):
    """ResNeXt's block: 1x1 reduce, grouped 3x3 (``cardinality`` groups, maybe strided), 1x1 expand, + shortcut."""

    def __init__(self, inputs: int, outputs: int, width: int, cardinality: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(inputs, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, stride, 1, groups=cardinality, bias=False), nn.BatchNorm2d(width),
            nn.ReLU(inplace=True), nn.Conv2d(width, outputs, 1, bias=False), nn.BatchNorm2d(outputs))
        self.shortcut = nn.Identity() if stride == 1 and inputs == outputs else nn.Sequential(
            nn.Conv2d(inputs, outputs, 1, stride, bias=False), nn.BatchNorm2d(outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class AudioTower(nn.Module):
    """Waveforms (B, T) at ``config.sample_rate`` -> (B, embed_dim) embeddings (not normalised)."""

    def __init__(self, config: AudioTowerConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.frontend = (FBSP(config.n_fft, config.hop, config.bands) if config.frontend == "fbsp"
                         else LogMel(config.sample_rate, config.n_fft, config.hop, config.bands))
        self.input_norm = nn.BatchNorm2d(1)
        stem = ([nn.Conv2d(1, config.stem, 7, 2, 3, bias=False), nn.BatchNorm2d(config.stem), nn.ReLU(inplace=True),
                 nn.MaxPool2d(3, 2, 1)] if config.big_stem else
                [nn.Conv2d(1, config.stem, 3, 1, 1, bias=False), nn.BatchNorm2d(config.stem), nn.ReLU(inplace=True)])
        self.stem = nn.Sequential(*stem)
        stages, inputs = [], config.stem
        for i, (width, blocks) in enumerate(zip(config.widths, config.blocks)):
            inner = config.cardinality * config.group_width * 2 ** i
            layers = [Bottleneck(inputs if b == 0 else width, width, inner, config.cardinality,
                                 2 if (b == 0 and (i > 0 or not config.big_stem)) else 1) for b in range(blocks)]
            stages.append(nn.Sequential(*layers))
            inputs = width
        self.stages = nn.Sequential(*stages)
        self.proj = nn.Linear(inputs, config.embed_dim)

    def spectrogram(self, samples: torch.Tensor) -> torch.Tensor:
        """(B, T) -> (B, bands, frames) log power, what the ResNeXt reads (before its input norm)."""
        return self.frontend(samples)

    def forward(self, samples: torch.Tensor) -> torch.Tensor:
        x = self.input_norm(self.spectrogram(samples)[:, None])
        x = self.stages(self.stem(x))
        return self.proj(x.mean(dim=(2, 3)))


def build_audio_tower(name_or_config: str | AudioTowerConfig | Mapping[str, Any] = "tiny",
                      embed_dim: int | None = None, seed: int | None = None, **overrides: Any) -> AudioTower:
    """A randomly initialised tower (``seed``: reproducible init)."""
    config = audio_tower_config(name_or_config, embed_dim, **overrides)
    if seed is None:
        return AudioTower(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AudioTower(config)
