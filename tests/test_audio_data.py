"""Sounds as data: WAV I/O, resampling (against scipy), seeded transforms, ESC-50 / UrbanSound8K readers on
hand-written files, corrupt files skipped and named, and the sounding world's attribute -> sound rules."""
from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import clipdense as cd
from clipdense.data import media
from clipdense.data.audio import (CropPad, Gain, Noise, TimeShift, Waveform, add_noise, conform, read_audio, resample,
                                  write_wav)
from clipdense.data.formats.audio import open_esc50, open_urbansound, write_urbansound
from clipdense.data.readers import open_data
from clipdense.data.skips import SkipCounter
from clipdense.data.streams import IndexedSource
from clipdense.data.world.scenes import SynthConfig
from clipdense.data.world.shapes import Thing
from clipdense.data.world.sounds import PITCH, SoundConfig, event_sound, loudness, scene_sound

SR = 16000


def tone(freq: float, seconds: float = 0.25, amp: float = 0.5, sr: int = SR) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(int(seconds * sr)) / sr)).astype(np.float32)


def test_wav_is_16_bit_pcm_and_reads_back_mono(tmp_path: Path) -> None:
    import soundfile as sf
    x = tone(440)
    write_wav(tmp_path / "a.wav", x, SR)
    info = sf.info(str(tmp_path / "a.wav"))
    assert (info.subtype, info.samplerate, info.channels) == ("PCM_16", SR, 1)
    wave = read_audio(tmp_path / "a.wav")
    assert wave.sample_rate == SR and np.abs(wave.samples.numpy() - x).max() <= 1 / 32768 + 1e-7
    sf.write(str(tmp_path / "s.wav"), np.stack([x, -x], axis=1), SR, subtype="PCM_16")   # stereo: mean of channels
    assert read_audio(tmp_path / "s.wav").samples.abs().max() < 1e-4
    assert media.media_kind("x.WAV") == "audio" and media.media_kind("x.flac") == "audio"


def test_unreadable_empty_and_too_long_sounds_are_one_line_load_errors(tmp_path: Path) -> None:
    (tmp_path / "bad.wav").write_bytes(b"RIFF not really a wave file")
    with pytest.raises(cd.ImageLoadError, match="bad.wav: not a readable sound file"):
        read_audio(tmp_path / "bad.wav")
    write_wav(tmp_path / "empty.wav", np.zeros(0, np.float32), SR)
    with pytest.raises(cd.ImageLoadError, match="empty sound"):
        read_audio(tmp_path / "empty.wav")
    write_wav(tmp_path / "long.wav", tone(440, 3.0), SR)
    with pytest.raises(cd.ImageLoadError, match="3 s long; at most 2 s"):
        read_audio(tmp_path / "long.wav", max_seconds=2.0)


def test_resample_equals_scipy_and_conform_refuses_silence() -> None:
    from scipy.signal import resample as scipy_resample
    for n, a, b in [(1000, 44100, 16000), (1001, 16000, 44100), (800, 16000, 8000), (999, 22050, 16000)]:
        x = torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(n))
        ref = scipy_resample(x.numpy(), int(round(n * b / a)))
        assert np.allclose(resample(x, a, b).numpy(), ref, atol=1e-12)
    said: list[str] = []
    out = conform(Waveform(torch.from_numpy(tone(440, 1.0, sr=44100)), 44100), SR, "x.wav", said.append)
    assert out.shape == (SR,) and said == ["x.wav: 44100 Hz resampled to the audio tower's 16000 Hz"]
    with pytest.raises(cd.DataError, match="x.wav: silent sound"):
        conform(Waveform(torch.zeros(SR), SR), SR, "x.wav")
    with pytest.raises(cd.DataError, match="empty sound"):
        conform(Waveform(torch.zeros(0), SR), SR, "x.wav")


def test_transforms_are_exact_and_seeded() -> None:
    x = torch.arange(10, dtype=torch.float32)
    g = torch.Generator().manual_seed(0)
    assert CropPad(4, random=False)(x, g).tolist() == [3, 4, 5, 6]
    assert CropPad(12)(x, g).tolist() == list(range(10)) + [0, 0]
    assert torch.allclose(Gain((6.0, 6.0))(x, g), x * 10 ** (6 / 20))
    shifted = TimeShift(0.3)(x, torch.Generator().manual_seed(1))
    assert sorted(shifted.tolist()) == x.tolist() and torch.equal(shifted, TimeShift(0.3)(x, torch.Generator().manual_seed(1)))
    signal, noise = torch.from_numpy(tone(300, 1.0)), torch.randn(SR, generator=g)
    mixed = add_noise(signal, noise, 10.0)
    snr = 10 * math.log10(signal.pow(2).mean() / (mixed - signal).pow(2).mean())
    assert snr == pytest.approx(10.0, abs=1e-4)
    a = Noise((5.0, 5.0))(signal, torch.Generator().manual_seed(3))
    assert torch.equal(a, Noise((5.0, 5.0))(signal, torch.Generator().manual_seed(3)))


def _esc50_by_hand(root: Path, rows: list[tuple[str, int, int, str]], corrupt: str | None = None) -> None:
    (root / "audio").mkdir(parents=True)
    (root / "meta").mkdir()
    with (root / "meta" / "esc50.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["filename", "fold", "target", "category", "esc10", "src_file", "take"])
        for name, fold, target, category in rows:
            writer.writerow([name, fold, target, category, "False", name.split("-")[1], "A"])
            if name == corrupt:
                (root / "audio" / name).write_bytes(b"garbage")
            else:
                write_wav(root / "audio" / name, tone(200 + 100 * target), SR)


def test_esc50_reader_on_hand_written_files(tmp_path: Path) -> None:
    rows = [("1-100-A-0.wav", 1, 0, "dog"), ("2-101-A-1.wav", 2, 1, "chirping_birds"), ("1-102-A-1.wav", 1, 1,
                                                                                       "chirping_birds")]
    _esc50_by_hand(tmp_path, rows)
    clips = open_esc50(tmp_path)
    assert clips.classes == ["dog", "chirping birds"] and clips.folds == [1, 2, 1] and clips.labels == [0, 1, 1]
    sample = clips[1]
    assert sample.image is None and sample.image_label == 1 and sample.key == "2-101-A-1"
    assert sample.audio.sample_rate == SR and sample.audio.samples.shape == (SR // 4,)
    assert len(open_esc50(tmp_path, folds=[1])) == 2
    reader, _, info = open_data(f"esc50:root={tmp_path},folds=2", needs={"audio", "image_label"})
    assert len(reader) == 1 and info.classes == ("dog", "chirping birds")
    with pytest.raises(cd.DataError, match="folds='x'; expected fold numbers"):
        open_data(f"esc50:root={tmp_path},folds=x", needs={"audio"})


def test_a_corrupt_wav_in_a_corpus_is_skipped_named_and_counted(tmp_path: Path) -> None:
    rows = [("1-1-A-0.wav", 1, 0, "dog"), ("1-2-A-1.wav", 1, 1, "cat"), ("1-3-A-0.wav", 1, 0, "dog")]
    _esc50_by_hand(tmp_path, rows, corrupt="1-2-A-1.wav")
    skips = SkipCounter()
    source = IndexedSource(open_esc50(tmp_path, skip_counter=skips), shuffle=False)
    stream = iter(source)
    keys = [next(stream).key for _ in range(2)]
    assert keys == ["1-1-A-0", "1-3-A-0"] and skips.count == 1
    assert "1-2-A-1.wav: not a readable sound file" in skips.examples[0]


def test_urbansound8k_reader_on_hand_written_files_and_its_writer(tmp_path: Path) -> None:
    root = tmp_path / "us8k"
    (root / "audio" / "fold3").mkdir(parents=True)
    (root / "metadata").mkdir()
    write_wav(root / "audio" / "fold3" / "7061-6-0-0.wav", tone(300), SR)
    (root / "metadata" / "UrbanSound8K.csv").write_text(
        "slice_file_name,fsID,start,end,salience,fold,classID,class\n"
        "7061-6-0-0.wav,7061,0.0,0.25,1,3,1,gun_shot\n")
    with pytest.raises(cd.DataError, match="class indices \\[1\\] are not 0..0"):
        open_urbansound(root)
    (root / "metadata" / "UrbanSound8K.csv").write_text(
        "slice_file_name,fsID,start,end,salience,fold,classID,class\n7061-6-0-0.wav,7061,0.0,0.25,1,3,0,gun_shot\n")
    clips = open_urbansound(root)
    assert clips.classes == ["gun shot"] and clips.folds == [3] and clips[0].image_label == 0
    written = tmp_path / "written"
    write_urbansound(written, [("1-0-0-0.wav", 2, 1, tone(100)), ("2-0-0-0.wav", 5, 0, tone(200))],
                     ["air conditioner", "car horn"], SR)
    again = open_urbansound(written)
    assert again.classes == ["air conditioner", "car horn"] and again.folds == [2, 5] and again.labels == [1, 0]


def _thing(shape: str, colour: str | None, radius: float) -> Thing:
    return Thing(f"{colour} {shape}", shape, colour, (32.0, 32.0), radius, 0.0, (0, 0, 0), (0, 0, 0))


def test_colour_sets_pitch_size_sets_loudness_count_sets_events() -> None:
    cfg = SoundConfig(event_seconds=0.5)
    for colour in ("red", "blue", "white"):
        wave = event_sound(_thing("circle", colour, 20), 64, cfg, np.random.default_rng(0))
        spectrum = np.abs(np.fft.rfft(wave))
        peak_hz = np.argmax(spectrum) * cfg.sample_rate / len(wave)
        assert peak_hz == pytest.approx(PITCH[colour], rel=0.03)
    small = event_sound(_thing("square", "red", 5), 64, cfg, np.random.default_rng(0))
    big = event_sound(_thing("square", "red", 30), 64, cfg, np.random.default_rng(0))
    assert np.abs(small).max() == pytest.approx(loudness(_thing("square", "red", 5), 64))
    assert np.abs(big).max() / np.abs(small).max() == pytest.approx((0.1 + 0.8 * 60 / 64) / (0.1 + 0.8 * 10 / 64))
    quiet = SoundConfig(snr_db=60.0, scene_seconds=2.0, event_seconds=0.1)
    for count in (1, 3):
        clip = scene_sound([_thing("diamond", "red", 20)] * count, ["sand"], 64, quiet, np.random.default_rng(5))
        energy = np.convolve(clip ** 2, np.ones(160) / 160, "same")
        onsets = np.flatnonzero((energy[1:] > 1e-3) & (energy[:-1] <= 1e-3))
        assert len(onsets) <= count and len(onsets) >= 1   # overlapping events may merge, never more than count
    clip = scene_sound([_thing("circle", "red", 20)], ["sky"], 64, SoundConfig(snr_db=10.0), np.random.default_rng(1))
    assert clip.dtype == np.float32 and np.abs(clip).max() <= 0.95 + 1e-6


def test_world_sounds_are_deterministic_and_readable(tmp_path: Path) -> None:
    from clipdense.data.world.sound_writer import scene_clip, write_sounds
    from clipdense.data.world.scenes import make_vocabulary
    from clipdense.data.world.writers import write_world
    cfg = SynthConfig(out=str(tmp_path / "w"), train=3, val=2, image_size=48, classify_train_per_class=0,
                      classify_val_per_class=0)
    write_world(cfg)
    counts = write_sounds(tmp_path / "w", SoundConfig(single_per_class=5))
    vocab = make_vocabulary(cfg)
    assert counts == {"train": 3, "val": 2, "esc50": 5 * len(vocab.things)}
    again = scene_clip(cfg, vocab, SoundConfig(single_per_class=5), "train", 1)
    written = read_audio(tmp_path / "w" / "audio" / "scenes" / "train" / "000001.wav").samples.numpy()
    assert np.abs(written - again).max() <= 1 / 32768 + 1e-6
    reader, _, _ = open_data(tmp_path / "w", needs={"audio", "caption"})
    sample = reader[0]
    assert sample.image.size == (48, 48) and sample.caption and sample.audio.sample_rate == 16000
    esc = open_esc50(tmp_path / "w" / "audio" / "esc50")
    assert esc.classes == vocab.things and sorted(set(esc.folds)) == [1, 2, 3, 4, 5]


def test_spoken_captions_are_speech_length_sounds_at_the_world_rate() -> None:
    from clipdense.data.world.speech import speak, speech_available
    if not speech_available():
        pytest.skip("eSpeak NG (espeakng-loader) is not installed")
    short, long = speak("a red circle", 16000), speak("a red circle left of a blue star on fresh snow", 16000)
    assert short.dtype == np.float32 and 0.4 < len(short) / 16000 < len(long) / 16000 < 5.0
    assert np.abs(long).max() > 0.05 and np.abs(long).max() <= 1.0
