"""Sounds in a CLIP's joint space: embed a waveform, classify a sound file zero-shot with text prompts.

    bundle = cd.load_model("tiny-vit-t8", pretrained="synthworld")
    cd.classify(bundle, "sound.wav", ["red circle", "blue star"])    # the shipped audio tower, found by the CLIP
    emb = cd.encode_audio(bundle, waveform, 16000)                    # (D,) unit norm, comparable with images / text

Which audio tower: one attached with ``use_audio_tower(bundle, head_file)``, else the one shipped for the bundle's
weights (``models/weights/audio/NAME--TAG.safetensors``). Either is an ``audio/audioclip`` head bound to the CLIP's
fingerprint, so a tower is never used beside weights it was not trained with.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import weakref
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from ..data.audio import Waveform, conform, read_audio
from ..errors import ConfigError
from ..heads.audio import AudioHead
from ..models.registry import WEIGHTS_DIR
from ..models.text import Template, text_classifier

AUDIO_WEIGHTS_DIR = WEIGHTS_DIR / "audio"
_attached: "weakref.WeakKeyDictionary[Any, AudioHead]" = weakref.WeakKeyDictionary()


def shipped_audio_tower(bundle: Any) -> Path | None:
    """The audio tower file shipped for the bundle's weights, if any."""
    if not bundle.pretrained:
        return None
    path = AUDIO_WEIGHTS_DIR / f"{bundle.name}--{bundle.pretrained}.safetensors"
    return path if path.is_file() else None


def use_audio_tower(bundle: Any, head: str | os.PathLike | AudioHead) -> AudioHead:
    """Attach an audio tower (a head file, a run dir, or a loaded ``AudioHead``) to ``bundle`` for the audio tasks;
    a file trained beside other weights is refused in one line."""
    from ..heads.expect import load_expected

    loaded = load_expected(head, bundle, "audio", "audio tower")
    _attached[bundle.model] = loaded.to(bundle.device).eval()
    return loaded


def audio_tower(bundle: Any) -> AudioHead:
    """The audio tower used beside ``bundle`` (attached, else shipped); one line says how to get one."""
    if bundle.model in _attached:
        return _attached[bundle.model]
    shipped = shipped_audio_tower(bundle)
    if shipped is None:
        raise ConfigError(f"no audio tower for {bundle.name} ({bundle.pretrained or 'random init'}): train one with "
                          "`clipdense train --objective audioclip` and attach it (cd.use_audio_tower(bundle, RUN) "
                          "or --audio-tower RUN); one is shipped for tiny-vit-t8 pretrained synthworld")
    return use_audio_tower(bundle, shipped)


def _say(message: str) -> None:
    print(message, file=sys.stderr)


def prepare_waveform(head: AudioHead, wave: Waveform, what: str,
                     say: Callable[[str], None] | None = _say) -> torch.Tensor:
    """(windows, clip_samples) at the tower's rate: the whole sound cut into consecutive clip-long windows (the
    last zero padded), so a long sound is heard whole and a short one padded once."""
    config = head.config
    samples = conform(wave, config.sample_rate, what, say)
    length = config.clip_samples
    windows = max(1, -(-samples.shape[-1] // length))
    padded = F.pad(samples, (0, windows * length - samples.shape[-1]))
    return padded.reshape(windows, length)


@torch.no_grad()
def encode_audio(bundle: Any, waveform: torch.Tensor | Waveform, sample_rate: int | None = None,
                 head: AudioHead | None = None) -> torch.Tensor:
    """(D,) unit-norm embedding of one sound (the mean of its windows' embeddings, renormalised).

    Args:
        waveform: (T,) or (channels, T) samples in [-1, 1] (channels are averaged), or a ``Waveform``.
        sample_rate: Hz of ``waveform`` (resampled to the tower's rate, said once on stderr).
        head: the audio tower (default: ``audio_tower(bundle)``).
    """
    if not isinstance(waveform, Waveform):
        if sample_rate is None:
            raise ConfigError("encode_audio: give the sample rate of the waveform")
        tensor = torch.as_tensor(waveform, dtype=torch.float32)
        waveform = Waveform(tensor.mean(dim=0) if tensor.ndim == 2 else tensor.reshape(-1), int(sample_rate))
    head = head or audio_tower(bundle)
    windows = prepare_waveform(head, waveform, "encode_audio").to(bundle.device)
    features = head.encode_audio(windows).float().mean(dim=0)
    return F.normalize(features, dim=-1).cpu()


@torch.no_grad()
def classify_audio(bundle: Any, waveform: Waveform, classes: Sequence[str],
                   templates: str | Sequence[Template] = "imagenet", head: AudioHead | None = None,
                   what: str = "sound") -> torch.Tensor:
    """(C,) probabilities: softmax of the audio-text logit scale x cosine(sound, class prompts)."""
    head = head or audio_tower(bundle)
    windows = prepare_waveform(head, waveform, what).to(bundle.device)
    features = F.normalize(head.encode_audio(windows).float().mean(dim=0, keepdim=True), dim=-1)
    text_side = bundle if head.clip is None else dataclasses.replace(bundle, model=head.clip)   # full regime
    classifier = text_classifier(text_side, list(classes), templates)
    logits = head.scales()[1].float() * features @ classifier.T.to(features.device)
    return logits.float().softmax(dim=-1)[0].cpu()   # autocast's matmul is bf16


def classify_audio_file(bundle: Any, path: str | os.PathLike, classes: Sequence[str],
                        templates: str | Sequence[Template] = "imagenet") -> torch.Tensor:
    """``classify``'s entry for sound files (``FILE_CLASSIFIERS["audio"]``)."""
    head = audio_tower(bundle)   # no tower: refused before the file is read
    return classify_audio(bundle, read_audio(path), classes, templates, head, what=str(path))
