"""The audio tower's front ends against references (librosa's STFT and mel filterbank; the DFT for FBSP at zero
bandwidth), FBSP's gradients, and the towers' shapes."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from clipdense.models.audio import AUDIO_TOWERS, AudioTowerConfig, audio_tower_config, build_audio_tower
from clipdense.models.audio_frontends import FBSP, LogMel, mel_filterbank, power_spectrogram


def test_stft_power_equals_numpy_frames_by_hand() -> None:
    """|rfft(Hann x frame)|^2 of zero-padded centred frames, written out with numpy."""
    x = np.random.default_rng(0).standard_normal(1000)
    n_fft, hop = 64, 16
    padded = np.pad(x, n_fft // 2)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)   # periodic Hann
    frames = np.stack([padded[i * hop:i * hop + n_fft] * window for i in range(1 + len(x) // hop)], axis=1)
    ref = np.abs(np.fft.rfft(frames, axis=0)) ** 2
    ours = power_spectrogram(torch.from_numpy(x)[None].float(), n_fft, hop)[0].numpy()
    assert ours.shape == ref.shape and np.abs(ours - ref).max() <= 1e-4 * ref.max()


@pytest.mark.slow   # librosa's first calls compile with numba (~10 s)
def test_stft_power_and_mel_filterbank_equal_librosa() -> None:
    librosa = pytest.importorskip("librosa")
    x = torch.randn(2, 8000, generator=torch.Generator().manual_seed(0))
    ours = power_spectrogram(x, 512, 160).numpy()
    ref = np.abs(librosa.stft(x.numpy(), n_fft=512, hop_length=160)) ** 2   # centred, zero padded, periodic Hann
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() <= 1e-5 * ref.max()
    for sr, n_fft, n_mels, fmax in [(16000, 512, 64, None), (44100, 2048, 128, 8000.0)]:
        ref_mel = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmax=fmax)
        assert np.abs(mel_filterbank(sr, n_fft, n_mels, fmax=fmax).numpy() - ref_mel).max() <= 1e-6 * ref_mel.max()
    logmel = LogMel(16000, 512, 160, 64)(x).numpy()
    ref_logmel = np.log(librosa.feature.melspectrogram(y=x.numpy(), sr=16000, n_fft=512, hop_length=160, n_mels=64,
                                                       power=2.0) + 1e-6)
    assert np.abs(logmel - ref_logmel).max() < 1e-3


def test_fbsp_at_zero_bandwidth_is_the_dft_and_every_parameter_gets_a_gradient() -> None:
    x = torch.randn(2, 4000, generator=torch.Generator().manual_seed(1))
    fbsp = FBSP(256, 128, filters=129)
    with torch.no_grad():
        fbsp.fb.zero_()
    stft = power_spectrogram(x, 256, 128)
    assert torch.allclose(fbsp.power(x), stft, rtol=1e-4, atol=1e-4 * float(stft.max()))
    fbsp = FBSP(256, 128, filters=40, bandwidth=2.0)
    out = fbsp(x)
    assert out.shape == (2, 40, 4000 // 128 + 1)
    out.mean().backward()
    for name in ("fc", "fb", "m"):
        grad = getattr(fbsp, name).grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name


def test_fbsp_bandwidth_narrows_the_envelope() -> None:
    """Larger fb -> a narrower time envelope -> each filter passes a wider band (less frequency selectivity)."""
    narrow, wide = FBSP(256, 128, 8, bandwidth=0.01), FBSP(256, 128, 8, bandwidth=3.0)
    env_narrow = torch.hypot(*narrow.kernels())[0]
    env_wide = torch.hypot(*wide.kernels())[0]
    assert (env_wide / env_wide.max())[0] < 0.5 < (env_narrow / env_narrow.max())[0]


@pytest.mark.parametrize("frontend", ["fbsp", "logmel"])
def test_tower_maps_waveforms_to_the_joint_dimension(frontend: str) -> None:
    tower = build_audio_tower("tiny", embed_dim=32, seed=0, frontend=frontend)
    same = build_audio_tower("tiny", embed_dim=32, seed=0, frontend=frontend)
    assert all(torch.equal(a, b) for a, b in zip(tower.state_dict().values(), same.state_dict().values()))
    out = tower(torch.randn(3, tower.config.clip_samples))
    assert out.shape == (3, 32) and torch.isfinite(out).all()


def test_configs_round_trip_and_bad_ones_are_refused() -> None:
    published = AUDIO_TOWERS["esresnext-fbsp-50"]
    assert AudioTowerConfig.from_dict(published.to_dict()) == published
    assert published.blocks == (3, 4, 6, 3) and published.cardinality == 32 and published.sample_rate == 44100
    with pytest.raises(Exception, match="frontend: expected one of"):
        audio_tower_config("tiny", frontend="mfcc")
    with pytest.raises(Exception, match="audio tower 'huge'"):
        audio_tower_config("huge")
    with pytest.raises(Exception, match="unknown key"):
        AudioTowerConfig.from_dict({"depth": 3})


def test_the_published_config_is_resnext50_32x4d_on_one_input_channel() -> None:
    """Same trunk as torchvision's resnext50_32x4d: equal parameters but the stem's 2 missing input channels."""
    import torchvision
    tower = build_audio_tower("esresnext-fbsp-50")
    ours = sum(p.numel() for n, p in tower.named_parameters() if not n.startswith(("proj", "frontend", "input_norm")))
    reference = sum(p.numel() for n, p in torchvision.models.resnext50_32x4d().named_parameters()
                    if not n.startswith("fc"))
    assert reference - ours == 64 * 2 * 7 * 7
    assert tower.frontend.channels == 1025 and tower.proj.out_features == 1024
