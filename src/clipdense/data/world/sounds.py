"""The sounding world: every thing of a scene makes a sound whose character follows what it is.

- colour -> pitch (one fundamental per colour, four semitones apart),
- shape -> timbre and envelope (a pure tone for a circle, odd harmonics for a square, a bell for a star, a chirp for a
  cross, a heartbeat for a heart, ...),
- size -> loudness (the thing's radius as a fraction of the image),
- count -> number of events (each thing sounds once, at its own onset),

mixed over a background whose colour follows the scene's stuff, at a chosen signal-to-noise ratio. Every clip is a
pure function of (world config, sound config, split, index), like the scenes themselves.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ...errors import ConfigError
from .shapes import COLOURS, Thing

#: fundamental of each colour (Hz): four semitones apart from 130.8 Hz (C3), in COLOURS' order
PITCH: dict[str, float] = {name: 130.81 * 2.0 ** (4 * i / 12) for i, name in enumerate(COLOURS)}
#: composites without a colour of their own sound at this pitch
NEUTRAL_PITCH = 440.0
#: background noise colour per stuff: the one-pole low-pass coefficient (0 = white, towards 1 = rumble)
STUFF_COLOUR: dict[str, float] = {"sky": 0.97, "water": 0.9, "sand": 0.7, "snow": 0.3, "grass": 0.5,
                                  "brick": 0.95, "gravel": 0.1}


@dataclass
class SoundConfig:
    """How the world sounds (saved beside the sounds as WORLD/audio/sounds.yaml).

    Args:
        sample_rate: Hz of every written clip.
        scene_seconds: length of a scene's clip.
        event_seconds: length of one thing's sound.
        snr_db: signal-to-noise ratio of the background under a scene's things.
        single_per_class: single-object clips per thing class in the ESC-50 layout (5 folds).
        speech: also read every scene's caption aloud with eSpeak NG (``world/speech.py``).
    """

    sample_rate: int = 16000
    scene_seconds: float = 2.0
    event_seconds: float = 0.5
    snr_db: float = 20.0
    single_per_class: int = 10
    speech: bool = False

    def validate(self) -> None:
        if not 4000 <= self.sample_rate <= 48000:
            raise ConfigError(f"sample_rate: expected 4000..48000 Hz, got {self.sample_rate}")
        if not 0.05 <= self.event_seconds <= self.scene_seconds <= 30:
            raise ConfigError(f"seconds: expected 0.05 <= event_seconds <= scene_seconds <= 30, got "
                              f"{self.event_seconds}, {self.scene_seconds}")
        if not -20 <= self.snr_db <= 60:
            raise ConfigError(f"--audio-snr: expected -20..60 dB, got {self.snr_db}")
        if self.single_per_class < 0:
            raise ConfigError(f"single_per_class: expected >= 0, got {self.single_per_class}")


def _envelope(n: int, attack: float, decay: float | None) -> np.ndarray:
    """Linear attack over ``attack`` of the event, then exponential decay (time constant ``decay`` of the event)
    or a sustain with a short release when ``decay`` is None."""
    t = np.arange(n) / n
    rise = np.clip(t / max(attack, 1e-3), 0, 1)
    fall = np.exp(-t / decay) if decay else np.clip((1 - t) / 0.1, 0, 1)
    return rise * fall


def _harmonics(t: np.ndarray, f0: float, amps: list[float], nyquist: float) -> np.ndarray:
    out = np.zeros_like(t)
    for k, a in enumerate(amps, start=1):
        if k * f0 < nyquist:
            out += a * np.sin(2 * np.pi * k * f0 * t)
    return out


def _pulses(t: np.ndarray, f0: float, times: list[float], width: float) -> np.ndarray:
    return sum(np.exp(-0.5 * ((t - c) / width) ** 2) for c in times) * np.sin(2 * np.pi * f0 * t)


#: shape -> (t seconds, fundamental, rng, nyquist) -> an event's waveform (before loudness)
TIMBRES: dict[str, Callable[[np.ndarray, float, np.random.Generator, float], np.ndarray]] = {
    "circle": lambda t, f, r, ny: np.sin(2 * np.pi * f * t) * np.sin(np.pi * t / t[-1]) ** 2,
    "square": lambda t, f, r, ny: _harmonics(t, f, [1, 0, 1 / 3, 0, 1 / 5, 0, 1 / 7], ny) * _envelope(len(t), .05, None),
    "triangle": lambda t, f, r, ny: _harmonics(t, f, [1, 0, 1 / 9, 0, 1 / 25], ny) * _envelope(len(t), .01, .25),
    "star": lambda t, f, r, ny: (np.sin(2 * np.pi * f * t) + .6 * np.sin(2 * np.pi * 2.76 * f * t)
                                  + .4 * np.sin(2 * np.pi * 5.4 * f * t)) * _envelope(len(t), .005, .15),
    "hexagon": lambda t, f, r, ny: _harmonics(t, f, [1, .8, .6, .5, .4, .3], ny) * (.6 + .4 * np.sin(
        2 * np.pi * 12 * t)) * _envelope(len(t), .05, None),
    "cross": lambda t, f, r, ny: np.sin(2 * np.pi * f * (t + 1.5 * t ** 2 / t[-1])) * _envelope(len(t), .02, None),
    "diamond": lambda t, f, r, ny: _harmonics(t, f, [1, 1 / 2, 1 / 3, 1 / 4, 1 / 5, 1 / 6], ny)
    * _envelope(len(t), .002, .06),
    "heart": lambda t, f, r, ny: _pulses(t, f / 2, [.15 * t[-1], .4 * t[-1]], .04 * t[-1]),
    "pentagon": lambda t, f, r, ny: np.sin(2 * np.pi * f * t + 4 * np.sin(2 * np.pi * 6 * t))
    * _envelope(len(t), .05, None),
    "ring": lambda t, f, r, ny: np.sin(2 * np.pi * f * t) * np.sin(2 * np.pi * .25 * f * t) * _envelope(len(t), .02, .4),
    "house": lambda t, f, r, ny: np.where(t < t[-1] / 2, np.sin(2 * np.pi * f * 1.26 * t), np.sin(2 * np.pi * f * t))
    * _envelope(len(t), .01, .5),
    "snowman": lambda t, f, r, ny: np.convolve(r.standard_normal(len(t)), np.ones(8) / 8, "same")
    * _envelope(len(t), .01, .2),
    "bullseye": lambda t, f, r, ny: _pulses(t, 2 * f, list(np.linspace(.05, .95, 6) * t[-1]), .01 * t[-1]),
    "checkerboard": lambda t, f, r, ny: np.sin(2 * np.pi * np.where((t * 8 / t[-1]).astype(int) % 2 == 0, f, 1.5 * f)
                                               * t) * _envelope(len(t), .01, None),
}


def loudness(thing: Thing, image_size: int) -> float:
    """Peak amplitude from size: a thing filling the picture is ~8x louder than one a tenth of its side."""
    scale = float(np.clip(2 * thing.radius / image_size, 0.05, 1.0))
    return 0.1 + 0.8 * scale


def event_sound(thing: Thing, image_size: int, cfg: SoundConfig, rng: np.random.Generator) -> np.ndarray:
    """One thing's sound: its shape's timbre at its colour's pitch, as loud as it is big."""
    n = int(cfg.event_seconds * cfg.sample_rate)
    t = np.arange(n) / cfg.sample_rate
    pitch = PITCH.get(thing.colour, NEUTRAL_PITCH) if thing.colour else NEUTRAL_PITCH
    pitch *= 2.0 ** (rng.normal(0, 0.1) / 12)   # a tenth of a semitone of jitter: same note, not the same sample
    wave = TIMBRES[thing.shape](t, pitch, rng, cfg.sample_rate / 2)
    peak = float(np.abs(wave).max()) or 1.0
    return wave / peak * loudness(thing, image_size)


def background(stuff: list[str], n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-power coloured noise: the average of each stuff's low-passed white noise."""
    from scipy.signal import lfilter
    out = np.zeros(n)
    for name in stuff or ["sky"]:
        a = STUFF_COLOUR.get(name, 0.5)
        out += lfilter([1 - a], [1, -a], rng.standard_normal(n))   # y[i] = a y[i-1] + (1 - a) x[i]
    return out / max(float(np.sqrt(np.mean(out ** 2))), 1e-12)


def scene_sound(things: list[Thing], stuff: list[str], image_size: int, cfg: SoundConfig,
                rng: np.random.Generator) -> np.ndarray:
    """A scene's clip: each thing one event at a random onset, over the stuff's background at ``snr_db``; a scene
    without things is its background alone, quietly (-30 dBFS power)."""
    n = int(cfg.scene_seconds * cfg.sample_rate)
    events = np.zeros(n)
    span = n - int(cfg.event_seconds * cfg.sample_rate)
    for thing in things:
        wave = event_sound(thing, image_size, cfg, rng)
        onset = int(rng.integers(0, span + 1))
        events[onset:onset + len(wave)] += wave
    noise = background(stuff, n, rng)
    power = float(np.mean(events ** 2))
    noise_power = power / 10 ** (cfg.snr_db / 10) if power > 0 else 10 ** (-30 / 10)
    mix = events + noise * np.sqrt(noise_power)
    top = float(np.abs(mix).max())
    return (mix * (0.95 / top) if top > 0.95 else mix).astype(np.float32)
