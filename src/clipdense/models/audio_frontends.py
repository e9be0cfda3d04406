"""What an audio tower sees first: a time-frequency picture of the waveform.

- ``power_spectrogram``: |STFT|^2 with ``torch.stft`` (periodic Hann window, centred frames, zero padding: librosa's
  defaults since 0.10, so a test can compare with it);
- ``mel_filterbank``: the Slaney mel scale with Slaney area normalisation (librosa's default ``htk=False,
  norm="slaney"``), and ``LogMel`` = log(mel @ power + eps), the plain front end;
- ``FBSP``: AudioCLIP's learnable front end (Guzhov et al. 2021, ESResNeXt-fbsp): the Fourier basis of the STFT is
  replaced by frequency B-spline wavelets ``|sinc(fb t / m)|^m exp(i fc t)`` with a learnt centre ``fc``, bandwidth
  ``fb`` and order ``m`` per output channel, t spanning [-pi, pi) over a frame. With ``fb = 0`` a filter is the DFT
  row at frequency ``fc`` (what a test checks), so training starts from a linear-frequency spectrogram and bends it.
"""
from __future__ import annotations

import math

import torch
from torch import nn

LOG_EPS = 1e-6


def hann(n_fft: int, device: torch.device | None = None) -> torch.Tensor:
    return torch.hann_window(n_fft, periodic=True, device=device)


def power_spectrogram(samples: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    """(B, T) -> (B, n_fft // 2 + 1, frames) power |STFT|^2 (centred frames, zero padded)."""
    spec = torch.stft(samples.float(), n_fft, hop_length=hop, window=hann(n_fft, samples.device), center=True,
                      pad_mode="constant", return_complex=True)
    return spec.real.pow(2) + spec.imag.pow(2)


def hz_to_mel(hz: torch.Tensor) -> torch.Tensor:
    """Slaney's mel scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above."""
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return torch.where(hz >= min_log_hz, min_log_mel + torch.log(hz.clamp_min(1e-10) / min_log_hz) / logstep,
                       hz / f_sp)


def mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return torch.where(mel >= min_log_mel, min_log_hz * torch.exp(logstep * (mel - min_log_mel)), f_sp * mel)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0,
                   fmax: float | None = None) -> torch.Tensor:
    """(n_mels, n_fft // 2 + 1) triangular filters, equally spaced in Slaney mels, each of unit area in Hz / 2."""
    fmax = sample_rate / 2 if fmax is None else fmax
    bins = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    edges = mel_to_hz(torch.linspace(float(hz_to_mel(torch.tensor(fmin, dtype=torch.float64))),
                                     float(hz_to_mel(torch.tensor(fmax, dtype=torch.float64))), n_mels + 2,
                                     dtype=torch.float64))
    widths = edges[1:] - edges[:-1]
    ramps = edges[:, None] - bins[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = torch.clamp(torch.minimum(lower, upper), min=0.0)
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.float()


class LogMel(nn.Module):
    """log(mel filterbank @ |STFT|^2 + eps): (B, T) -> (B, n_mels, frames)."""

    def __init__(self, sample_rate: int, n_fft: int, hop: int, n_mels: int) -> None:
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("filters", mel_filterbank(sample_rate, n_fft, n_mels), persistent=False)

    @property
    def channels(self) -> int:
        return self.filters.shape[0]

    def forward(self, samples: torch.Tensor) -> torch.Tensor:
        power = power_spectrogram(samples, self.n_fft, self.hop)
        return torch.log(torch.einsum("mf,bft->bmt", self.filters, power) + LOG_EPS)


def frames(samples: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    """(B, T) -> (B, frames, n_fft) Hann-windowed frames, centred and zero padded as ``power_spectrogram``'s."""
    padded = nn.functional.pad(samples.float(), (n_fft // 2, n_fft // 2))
    return padded.unfold(-1, n_fft, hop) * hann(n_fft, samples.device)


class FBSP(nn.Module):
    """AudioCLIP's frequency B-spline front end: (B, T) -> (B, filters, frames) log power.

    Args:
        n_fft, hop: frame length and hop in samples.
        filters: output channels; their centres start evenly spaced from 0 to Nyquist (DFT bins ``fc``).
        bandwidth: initial ``fb`` (small: nearly the DFT row; the envelope narrows as ``fb`` grows).
    """

    def __init__(self, n_fft: int, hop: int, filters: int, bandwidth: float = 0.05) -> None:
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.fc = nn.Parameter(torch.linspace(0, n_fft / 2, filters))
        self.fb = nn.Parameter(torch.full((filters,), float(bandwidth)))
        self.m = nn.Parameter(torch.ones(filters))
        # t_n = 2 pi n / N - pi: exp(i fc t_n) is the DFT row of frequency fc, times the phase exp(-i pi fc)
        self.register_buffer("t", 2 * math.pi * torch.arange(n_fft) / n_fft - math.pi, persistent=False)

    @property
    def channels(self) -> int:
        return self.fc.shape[0]

    def kernels(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(filters, n_fft) real and imaginary parts of sqrt(fb') |sinc(fb t / m)|^m exp(i fc t) (fb' = max(fb, 1):
        no gain at the DFT start)."""
        m = self.m.clamp_min(0.1)[:, None]
        envelope = (torch.sinc(self.fb[:, None] * self.t[None] / (math.pi * m)).abs() + 1e-12) ** m
        envelope = envelope * self.fb.abs().clamp_min(1.0).sqrt()[:, None]
        phase = self.fc[:, None] * self.t[None]
        return envelope * torch.cos(phase), envelope * torch.sin(phase)

    def power(self, samples: torch.Tensor) -> torch.Tensor:
        """(B, filters, frames) |<frame, kernel>|^2."""
        x = frames(samples, self.n_fft, self.hop)
        real, imag = self.kernels()
        return (torch.einsum("btn,fn->bft", x, real).pow(2) + torch.einsum("btn,fn->bft", x, imag).pow(2))

    def forward(self, samples: torch.Tensor) -> torch.Tensor:
        return torch.log(self.power(samples) + LOG_EPS)
