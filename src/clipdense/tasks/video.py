"""Videos in a CLIP's joint space: embed a clip, classify it zero-shot, search clips with a sentence.

    bundle = cd.load_model("tiny-vit-t8", pretrained="synthworld")
    emb = cd.encode_video(bundle, frames)                        # (T, H, W, 3) uint8 or a video file -> (D,)
    cd.classify(bundle, "clip.mp4", ["moves left", "grows"])     # (C,) probabilities
    cd.search_videos(bundle, "clips/", "a red star moves left")  # [(Path, cosine), ...] best first

Without a head a clip is the meanP of its frames (CLIP4Clip's parameter-free head); with a ``video/temporal`` head
(trained by clip4clip or actionclip, ``load_head``) its pooling and, when it carries one, its tuned CLIP are used.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from ..data.media import media_kind
from ..data.skips import SkipCounter
from ..data.video import FrameSampling, check_frames, read_video
from ..errors import ConfigError, ImageLoadError
from ..heads.video import VideoHead, mean_pool
from ..models.text import Template, text_classifier
from ..objectives.actionclip import TEMPLATE_SETS
from ..objectives.video_common import center_view, encode_frames
from ..objectives.views import model_image_stats

__all__ = ["encode_video", "encode_videos", "classify_video", "classify_video_file", "search_videos", "video_paths"]


def _frames(video: Any, sampling: FrameSampling | None) -> torch.Tensor:
    if isinstance(video, (str, os.PathLike)):
        if media_kind(video) != "video":
            raise ConfigError(f"{video}: a {media_kind(video)} file, expected a video (.mp4, .avi, .webm ...)")
        return read_video(video, sampling)
    return check_frames(video, "video")


@torch.no_grad()
def encode_videos(bundle: Any, videos: Sequence[Any], head: VideoHead | None = None,
                  sampling: FrameSampling | None = None) -> torch.Tensor:
    """(N, D) unit-norm embeddings of clips (frame tensors (T, H, W, 3) uint8 or video files), one clip per forward."""
    model = head.clip_model(bundle) if head is not None else bundle.model
    size, mean, std = model_image_stats(model)
    rows = []
    for video in videos:
        view = center_view(_frames(video, sampling), size, mean, std)[None].to(bundle.device)
        frames = encode_frames(model, view).float()
        rows.append((head.pool(frames) if head is not None else mean_pool(frames))[0].float().cpu())
    return torch.stack(rows)


def encode_video(bundle: Any, video: Any, head: VideoHead | None = None,
                 sampling: FrameSampling | None = None) -> torch.Tensor:
    """(D,) unit-norm embedding of one clip: frames (T, H, W, 3) uint8, or a video file (``sampling``: 8 uniform
    frames by default)."""
    return encode_videos(bundle, [video], head, sampling)[0]


def _templates(templates: str | Sequence[Template]) -> str | Sequence[Template]:
    return TEMPLATE_SETS[templates] if isinstance(templates, str) and templates in TEMPLATE_SETS else templates


@torch.no_grad()
def classify_video(bundle: Any, video: Any, classes: Sequence[str], templates: str | Sequence[Template] = "actionclip",
                   head: VideoHead | None = None, sampling: FrameSampling | None = None) -> torch.Tensor:
    """(C,) zero-shot class probabilities of one clip: softmax of the scaled cosines to each class's prompt
    ensemble (``actionclip``: the 16 ActionCLIP templates averaged, as its test protocol)."""
    if not classes:
        raise ConfigError("classes: empty list")
    model = head.clip_model(bundle) if head is not None else bundle.model
    embedding = encode_video(bundle, video, head, sampling).to(bundle.device)
    side = bundle if model is bundle.model else _with_model(bundle, model)
    classifier = text_classifier(side, list(classes), _templates(templates))
    logits = model.logit_scale.exp().float() * embedding.float() @ classifier.float().T
    return logits.float().softmax(dim=-1).cpu()   # autocast's matmul is bf16


def _with_model(bundle: Any, model: Any) -> Any:
    import dataclasses
    return dataclasses.replace(bundle, model=model)


def classify_video_file(bundle: Any, path: str | os.PathLike, classes: list[str],
                        templates: str | Sequence[Template]) -> torch.Tensor:
    """``cd.classify(bundle, "clip.mp4", classes)``: the file classifier registered for videos."""
    return classify_video(bundle, path, classes, "actionclip" if templates == "imagenet" else templates)


def video_paths(videos: Any) -> list[Path]:
    """The video files to search: a folder's video files (recursive, sorted), or the given paths in order."""
    if isinstance(videos, (str, os.PathLike)) and Path(videos).is_dir():
        paths = sorted(p for p in Path(videos).rglob("*") if p.is_file() and media_kind(p) == "video")
        if not paths:
            raise ConfigError(f"{videos}: no video files in this folder (recursive: .mp4, .avi, .webm ...)")
        return paths
    paths = [Path(videos)] if isinstance(videos, (str, os.PathLike)) else [Path(p) for p in videos]
    if not paths:
        raise ConfigError("search: no videos given")
    return paths


def search_videos(bundle: Any, videos: Any, query: str, top: int | None = None, head: VideoHead | None = None,
                  skips: SkipCounter | None = None) -> list[tuple[Path, float]]:
    """The clips ranked by cosine to a sentence, best first. A corrupt or unreadable video is skipped and counted
    in ``skips`` (named there), not fatal."""
    if top is not None and top <= 0:
        raise ConfigError(f"top: {top}; expected a count >= 1")
    if not isinstance(query, str) or not query.strip():
        raise ConfigError("search: the query is a non-empty sentence")
    model = head.clip_model(bundle) if head is not None else bundle.model
    side = bundle if model is bundle.model else _with_model(bundle, model)
    text = text_classifier(side, [query.strip()], ["{}"])[0].float().cpu()
    skips = skips if skips is not None else SkipCounter()
    kept, rows = [], []
    for path in video_paths(videos):
        try:
            rows.append(encode_video(bundle, path, head))
            kept.append(path)
        except ImageLoadError as exc:
            skips.add(exc)
    if not rows:
        raise ConfigError(f"search: no readable video among the {skips.count} given ({skips.summary()})")
    scores = (torch.stack(rows) @ F.normalize(text, dim=-1)).float()
    order = sorted(range(len(kept)), key=lambda i: (-float(scores[i]), i))[:top]
    return [(kept[i], float(scores[i])) for i in order]


def holds_videos(items: Any) -> bool:
    """Whether a search's items are videos: video paths, or a folder with video files and no image files."""
    if isinstance(items, (str, os.PathLike)) and Path(items).is_dir():
        kinds = {media_kind(p) for p in Path(items).rglob("*") if p.is_file() and p.suffix}
        return "video" in kinds and "image" not in kinds
    paths = [items] if isinstance(items, (str, os.PathLike)) else list(items)
    return bool(paths) and all(media_kind(p) == "video" for p in paths)
