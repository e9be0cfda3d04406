"""Search a set of images with a sentence or a sound: the images ranked by cosine to the query in the CLIP's space.

    bundle = cd.load_model("tiny-vit-t8", pretrained="synthworld")
    cd.search(bundle, "photos/", "a red circle")                 # [(Path, cosine), ...] best first
    cd.search(bundle, "photos/", cd.read_audio("bark.wav"))      # a sound: the audio tower's embedding (AudioCLIP)

A sound is embedded by the audio tower used beside the bundle (``tasks.audio.audio_tower``); a tower trained in the
full regime brings its own CLIP, whose image tower then embeds the images (the space the sound was trained in).
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Sequence, Union

import torch
import torch.nn.functional as F

from ..data.audio import Waveform
from ..data.images import open_image
from ..errors import ConfigError
from ..models.text import text_classifier
from .audio import audio_tower, encode_audio
from .batching import list_images

Query = Union[str, Waveform]
ImagesOrDir = Union[str, os.PathLike, Sequence[Union[str, os.PathLike]]]

__all__ = ["search", "image_paths", "image_embeddings", "query_embedding", "rank"]


def image_paths(images: ImagesOrDir) -> list[Path]:
    """The image files to search: a folder's image files (recursive, sorted), or the given paths in order."""
    if isinstance(images, (str, os.PathLike)):
        folder = Path(images)
        paths = list_images(folder, recursive=True) if folder.is_dir() else [folder]
        if not paths:
            raise ConfigError(f"{folder}: no image files in this folder (recursive: .png, .jpg ...)")
        return paths
    paths = [Path(p) for p in images]
    if not paths:
        raise ConfigError("search: no images given")
    return paths


@torch.no_grad()
def query_embedding(bundle: Any, query: Query) -> tuple[torch.Tensor, Any]:
    """(D,) unit-norm embedding of the query and the bundle whose image tower shares its space."""
    if isinstance(query, Waveform):
        head = audio_tower(bundle)
        side = bundle if head.clip is None else dataclasses.replace(bundle, model=head.clip)   # full regime
        return encode_audio(bundle, query, head=head), side
    if not isinstance(query, str) or not query.strip():
        raise ConfigError("search: the query is a non-empty sentence or a sound (a Waveform, cd.read_audio(path))")
    return text_classifier(bundle, [query.strip()], ["{}"])[0].float().cpu(), bundle


@torch.no_grad()
def image_embeddings(bundle: Any, paths: Sequence[Path]) -> torch.Tensor:
    """(N, D) unit-norm image embeddings, one image per forward so that each equals the single-image value."""
    rows = []
    for path in paths:
        tensor = bundle.preprocess(open_image(path))[None].to(bundle.device)
        rows.append(F.normalize(bundle.model.encode_image(tensor).float(), dim=-1)[0].cpu())
    return torch.stack(rows)


def rank(query: torch.Tensor, images: torch.Tensor, top: int | None = None) -> list[tuple[int, float]]:
    """(index, cosine) of the rows of ``images`` best first (ties keep the input order)."""
    if top is not None and top <= 0:
        raise ConfigError(f"top: {top}; expected a count >= 1")
    scores = F.normalize(images.float(), dim=-1) @ F.normalize(query.float(), dim=-1)
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    return [(i, float(scores[i])) for i in order[:top]]


def search(bundle: Any, images: ImagesOrDir, query: Query, top: int | None = None) -> list[tuple[Path, float]]:
    """The images ranked by cosine to ``query`` (a sentence, or a sound as a ``Waveform``), best first.

    Args:
        images: a folder (its image files, recursively) or a list of image paths.
        top: keep the best ``top`` (default: all).
    """
    if top is not None and top <= 0:
        raise ConfigError(f"top: {top}; expected a count >= 1")
    from .video import holds_videos, search_videos
    if holds_videos(images) and isinstance(query, str):   # clips: ranked by their meanP embedding
        return search_videos(bundle, images, query, top)
    embedding, side = query_embedding(bundle, query)
    paths = image_paths(images)
    return [(paths[i], score) for i, score in rank(embedding, image_embeddings(side, paths), top)]
