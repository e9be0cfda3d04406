"""The page's sound tab without Gradio: an uploaded sound's zero-shot classes (text prompts through the audio tower,
as ``clipdense classify SOUND.wav``) and the world scenes whose pictures lie nearest to it in the joint space (as
``clipdense search DIR --audio SOUND.wav``).

The audio tower is the one used beside the page's model (``tasks.audio.audio_tower``: the shipped one for
``tiny-vit-t8`` / ``synthworld``); a model without one gets the one-line message that says how to train one.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..data.audio import AUDIO_SUFFIXES, Waveform, read_audio
from ..data.media import media_kind
from ..errors import ConfigError
from ..models.text_cache import use_text_cache
from ..tasks.audio import audio_tower, classify_audio
from ..tasks.search import search
from .analysis import Analyser, parse_classes

#: the page's bound on an upload: a request runs on the server's CPU while the user waits
MAX_SOUND_SECONDS = 60.0
#: how many of the world scenes are shown as the sound's nearest pictures
NEAREST = 4


@dataclass(frozen=True)
class SoundRequest:
    """What the sound tab asks for."""

    sound: str | os.PathLike | None
    classes: str
    model: str = "tiny-vit-t8"
    pretrained: str | None = "synthworld"
    templates: str = "imagenet"


@dataclass
class Heard:
    """The answer: class -> probability, the nearest pictures (path, cosine) best first, and how long it took."""

    ranking: dict[str, float]
    nearest: list[tuple[str, float]]
    seconds: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON-ready, for the page's details and the API."""
        return {"ranking": [{"class": c, "probability": round(p, 6)} for c, p in self.ranking.items()],
                "nearest": [{"image": Path(p).name, "cosine": round(s, 6)} for p, s in self.nearest],
                "seconds": {k: round(v, 3) for k, v in self.seconds.items()}}


def read_sound(path: str | os.PathLike | None) -> Waveform:
    """The uploaded sound, checked: none, another medium, unreadable or longer than the page's bound is one line."""
    if path is None or not str(path).strip():
        raise ConfigError(f"sound: upload a sound file ({', '.join(AUDIO_SUFFIXES)})")
    name = Path(path).name
    if media_kind(path) != "audio":
        raise ConfigError(f"sound {name}: not a sound file (expected {', '.join(AUDIO_SUFFIXES)})")
    return read_audio(path, max_seconds=MAX_SOUND_SECONDS)


def listen(analyser: Analyser, request: SoundRequest, images: Sequence[str | os.PathLike],
           nearest: int = NEAREST) -> Heard:
    """The sound's zero-shot classes (best first) and the ``nearest`` of ``images`` by cosine to it."""
    classes = parse_classes(request.classes)
    wave = read_sound(request.sound)
    start = time.perf_counter()
    with analyser._lock, use_text_cache(analyser.text_cache):   # noqa: SLF001 - one request at a time, as analyse
        bundle = analyser.models.bundle(request.model, request.pretrained)
        head = audio_tower(bundle)
        probs = classify_audio(bundle, wave, classes, request.templates, head, what="sound")
        heard = time.perf_counter()
        ranked = search(bundle, list(images), wave, top=nearest) if images else []
    ranking = dict(sorted(zip(classes, probs.tolist()), key=lambda item: -item[1]))
    return Heard(ranking, [(str(p), s) for p, s in ranked],
                 {"classify": heard - start, "nearest": time.perf_counter() - heard})


__all__ = ["MAX_SOUND_SECONDS", "NEAREST", "Heard", "SoundRequest", "listen", "read_sound"]
