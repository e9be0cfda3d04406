"""Spoken captions: each scene's caption read aloud by eSpeak NG, offline.

The ``espeakng-loader`` wheel (extra ``speech``) ships libespeak-ng and its voice data; this module drives the
library's classic synchronous API through ctypes (``espeak_Initialize`` with synchronous output, a synth callback that
collects 16-bit samples, ``espeak_Synth``) and resamples its 22.05 kHz output to the world's rate. The voice is fixed
(English, default rate and pitch). eSpeak's output is not bit-reproducible: the same caption read twice differs
by a few samples in length and detail (measured; the synthetic sounds are reproducible, the speech is not).
"""
from __future__ import annotations

import ctypes
import threading
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from ...errors import DataError
from ..audio import resample

AUDIO_OUTPUT_SYNCHRONOUS = 2
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
_lock = threading.Lock()


class _Voice:
    """The loaded library, its output rate, and the chunks the callback collects for the current caption."""

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as exc:
            raise DataError("spoken captions need eSpeak NG: pip install 'clipdense[speech]' (espeakng-loader)") from exc
        self.lib = ctypes.cdll.LoadLibrary(espeakng_loader.get_library_path())
        path = espeakng_loader.get_data_path().encode()
        self.rate = int(self.lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, path, 0))
        if self.rate <= 0 or self.lib.espeak_SetVoiceByName(b"en") != 0:
            raise DataError("eSpeak NG did not start (its voice data was not found next to the library)")
        self.chunks: list[np.ndarray] = []
        self.callback = _CALLBACK(self._collect)   # kept alive as long as the library may call it
        self.lib.espeak_SetSynthCallback(self.callback)

    def _collect(self, wav: Any, count: int, events: Any) -> int:
        if count > 0:
            self.chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        return 0

    def say(self, text: str) -> np.ndarray:
        data = text.encode("utf-8")
        self.chunks = []
        status = self.lib.espeak_Synth(ctypes.c_char_p(data), ctypes.c_size_t(len(data) + 1), 0, 0, 0, 0, None, None)
        self.lib.espeak_Synchronize()
        if status != 0 or not self.chunks:
            raise DataError(f"eSpeak NG could not speak {text[:40]!r} (status {status})")
        return np.concatenate(self.chunks).astype(np.float32) / 32768.0


@lru_cache(maxsize=1)
def _voice() -> _Voice:
    return _Voice()


def speech_available() -> bool:
    """Whether eSpeak NG can be loaded here."""
    try:
        _voice()
    except (DataError, OSError):
        return False
    return True


def speak(text: str, sample_rate: int = 16000) -> np.ndarray:
    """``text`` read aloud: mono float32 samples at ``sample_rate``."""
    with _lock:
        voice = _voice()
        samples = voice.say(text)
    return resample(torch.from_numpy(samples), voice.rate, sample_rate).numpy().clip(-1, 1)
