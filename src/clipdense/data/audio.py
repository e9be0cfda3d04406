"""Sounds as data: the ``Waveform`` a ``Sample.audio`` holds, WAV/FLAC reading and writing (``soundfile``), resampling,
the checks every entry point applies (empty, silent, too long) and the seeded audio transforms (crop / pad, gain,
time shift, noise at an SNR) that objectives compose like the image ones.

No torchaudio (its releases pin older torch than ours): resampling is band-limited in the Fourier domain with torch.
"""
from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import numpy as np
import torch

from ..errors import DataError
from .images import load_error
from .media import register_media
from .validate import finite_signal

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
register_media("audio", AUDIO_SUFFIXES)

#: the longest sound any entry point decodes (one line refuses longer ones, before decoding them)
MAX_SECONDS = 600.0
#: a clip whose peak stays under this is silent (16-bit PCM's 1 LSB is 3e-5)
SILENCE_PEAK = 1e-4


class Waveform(NamedTuple):
    """A mono sound: ``samples`` (T,) float32 in [-1, 1] and its ``sample_rate`` in Hz."""

    samples: torch.Tensor
    sample_rate: int

    @property
    def seconds(self) -> float:
        return self.samples.shape[-1] / self.sample_rate


def _soundfile():
    try:
        import soundfile
    except ImportError as exc:   # pragma: no cover - the audio extra is missing
        raise DataError("reading sounds needs soundfile: pip install 'clipdense[audio]'") from exc
    return soundfile


def read_audio(path: str | os.PathLike, max_seconds: float = MAX_SECONDS) -> Waveform:
    """A sound file as a mono ``Waveform`` (channels averaged). A file that is not audio, is empty or longer than
    ``max_seconds`` raises ``ImageLoadError`` (readers skip and count it; the CLI prints its one line)."""
    sf, path = _soundfile(), Path(path)
    try:
        info = sf.info(str(path))
        if info.frames <= 0:
            raise load_error(str(path), "empty sound (0 samples)")
        if info.frames > max_seconds * info.samplerate:
            raise load_error(str(path), f"{info.frames / info.samplerate:.0f} s long; at most {max_seconds:.0f} s "
                             "is read (cut it first)")
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError, OSError, ValueError) as exc:   # ImageLoadError is none of these
        reason = "no such file" if not path.exists() else "not a readable sound file (WAV, FLAC or OGG expected)"
        raise load_error(str(path), reason) from exc
    finite_signal(data, str(path))   # a float WAV can hold NaN / inf: a named skip, not a NaN loss later
    return Waveform(torch.from_numpy(np.ascontiguousarray(data.mean(axis=1))), int(rate))


def decode_audio(data: bytes, name: str = "<bytes>") -> Waveform:
    """A sound file's bytes (a shard member) as a mono ``Waveform``; undecodable bytes raise ``ImageLoadError``."""
    sf = _soundfile()
    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError, ValueError) as exc:
        raise load_error(name, "not a readable sound file") from exc
    if samples.shape[0] == 0:
        raise load_error(name, "empty sound (0 samples)")
    finite_signal(samples, name)
    return Waveform(torch.from_numpy(np.ascontiguousarray(samples.mean(axis=1))), int(rate))


def wav_bytes(samples: np.ndarray | torch.Tensor, sample_rate: int) -> bytes:
    """16-bit PCM WAV bytes of a mono float signal in [-1, 1] (clipped)."""
    sf = _soundfile()
    array = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0)
    buffer = io.BytesIO()
    sf.write(buffer, array, int(sample_rate), format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def write_wav(path: str | os.PathLike, samples: np.ndarray | torch.Tensor, sample_rate: int) -> None:
    """Write a mono float signal as 16-bit PCM WAV."""
    Path(path).write_bytes(wav_bytes(samples, sample_rate))


def resample(samples: torch.Tensor, source_rate: int, target_rate: int) -> torch.Tensor:
    """Band-limited resampling along the last axis (ideal low-pass in the Fourier domain, as
    ``scipy.signal.resample``): exact for signals below both Nyquist frequencies."""
    if source_rate == target_rate:
        return samples
    length = samples.shape[-1]
    target = max(1, int(round(length * target_rate / source_rate)))
    spectrum = torch.fft.rfft(samples.double(), dim=-1)
    shortest = min(length, target)
    out = torch.zeros(*spectrum.shape[:-1], target // 2 + 1, dtype=spectrum.dtype)
    out[..., :shortest // 2 + 1] = spectrum[..., :shortest // 2 + 1]
    if shortest % 2 == 0:   # the shorter signal's Nyquist bin stands for +f and -f (scipy.signal.resample's rule)
        out[..., shortest // 2] *= 2.0 if target < length else 0.5
    return (torch.fft.irfft(out, n=target, dim=-1) * (target / length)).to(samples.dtype)


def conform(wave: Waveform, sample_rate: int, what: str, say: Callable[[str], None] | None = None) -> torch.Tensor:
    """The samples of ``wave`` at ``sample_rate``, checked: empty or silent sound is a ``DataError`` naming ``what``;
    a different rate is resampled and ``say`` is told once in one line."""
    samples = wave.samples.float().reshape(-1)
    if samples.numel() == 0:
        raise DataError(f"{what}: empty sound (0 samples)")
    if not torch.isfinite(samples).all():
        raise DataError(f"{what}: the sound holds NaN or infinite samples")
    if samples.abs().max() < SILENCE_PEAK:
        raise DataError(f"{what}: silent sound (peak below {SILENCE_PEAK:g}); nothing to classify")
    if wave.sample_rate != sample_rate:
        if say is not None:
            say(f"{what}: {wave.sample_rate} Hz resampled to the audio tower's {sample_rate} Hz")
        samples = resample(samples, wave.sample_rate, sample_rate)
    return samples


# --- seeded transforms: (samples (T,), generator) -> samples -------------------------------------------------

AudioOp = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


@dataclass(frozen=True)
class CropPad:
    """A window of exactly ``length`` samples: a random crop of a longer sound (the centre when not ``random``),
    zeros after a shorter one."""

    length: int
    random: bool = True

    def __call__(self, samples: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        extra = samples.shape[-1] - self.length
        if extra < 0:
            return torch.nn.functional.pad(samples, (0, -extra))
        start = int(torch.randint(extra + 1, (), generator=generator)) if self.random else extra // 2
        return samples[..., start:start + self.length]


@dataclass(frozen=True)
class Gain:
    """Multiply by a gain drawn uniformly in decibels from ``db`` (low, high)."""

    db: tuple[float, float] = (-6.0, 6.0)

    def __call__(self, samples: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return samples * 10.0 ** (_uniform(generator, *self.db) / 20.0)


@dataclass(frozen=True)
class TimeShift:
    """Roll the sound circularly by up to ``fraction`` of its length either way."""

    fraction: float = 0.1

    def __call__(self, samples: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        most = int(self.fraction * samples.shape[-1])
        return samples if most == 0 else torch.roll(samples, int(torch.randint(-most, most + 1, (),
                                                                                generator=generator)), dims=-1)


def add_noise(samples: torch.Tensor, noise: torch.Tensor, snr_db: float) -> torch.Tensor:
    """``samples`` + ``noise`` scaled so that 10 log10(P_signal / P_noise) = ``snr_db`` (mean powers)."""
    signal_power = samples.pow(2).mean().clamp_min(1e-12)
    noise_power = noise.pow(2).mean().clamp_min(1e-12)
    return samples + noise * torch.sqrt(signal_power / (noise_power * 10.0 ** (snr_db / 10.0)))


@dataclass(frozen=True)
class Noise:
    """White noise at an SNR drawn uniformly from ``snr_db`` (low, high) decibels."""

    snr_db: tuple[float, float] = (10.0, 30.0)

    def __call__(self, samples: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        noise = torch.randn(samples.shape, generator=generator, dtype=samples.dtype)
        return add_noise(samples, noise, _uniform(generator, *self.snr_db))


@dataclass(frozen=True)
class AudioCompose:
    """Apply ``ops`` in order with the same generator."""

    ops: Sequence[AudioOp]

    def __call__(self, samples: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        for op in self.ops:
            samples = op(samples, generator)
        return samples


def peak_normalise(samples: torch.Tensor, peak: float = 0.9) -> torch.Tensor:
    """Scale so the largest magnitude is ``peak`` (a silent signal is returned unchanged)."""
    top = samples.abs().max()
    return samples if float(top) == 0.0 else samples * (peak / top)


def db(value: float) -> float:
    """Amplitude ratio -> decibels."""
    return 20.0 * math.log10(max(value, 1e-12))
