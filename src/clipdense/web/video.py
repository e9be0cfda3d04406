"""The page's video tab without Gradio: an uploaded clip's zero-shot actions, for the whole clip (as ``clipdense
classify VIDEO``) and as a per-frame timeline: at frame t, the meanP of the frames in a window centred on t scored
against the named actions (one embedding per frame, so a timeline costs one image-tower pass over the clip).

A frame alone shows no motion; the window is what lets "moves left" or "grows" be read at a moment of the clip.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from PIL import Image, ImageDraw

from ..data.media import media_kind
from ..data.video import FrameSampling, read_video
from ..errors import ConfigError
from ..heads.video import mean_pool
from ..models.text import text_classifier
from ..models.text_cache import use_text_cache
from ..objectives.actionclip import TEMPLATE_SETS
from ..objectives.video_common import center_view, encode_frames
from ..objectives.views import model_image_stats
from .analysis import Analyser, parse_classes

#: frames sampled from an upload (uniform): the timeline's resolution, bounded because a request runs on the CPU
TIMELINE_FRAMES = 16
#: frames either side of t in the timeline's window, by default
HALF_WINDOW = 2
THUMB = 48


@dataclass(frozen=True)
class VideoRequest:
    """What the video tab asks for."""

    video: str | os.PathLike | None
    classes: str
    model: str = "tiny-vit-t8"
    pretrained: str | None = "synthworld"
    templates: str = "actionclip"
    half_window: int = HALF_WINDOW


@dataclass
class Watched:
    """The answer: action -> probability for the whole clip (best first), the (T, C) timeline over ``classes`` in the
    order given, the picture, the timings."""

    ranking: dict[str, float]
    classes: list[str]
    timeline: torch.Tensor
    picture: Image.Image
    seconds: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON-ready: the ranking, each frame's best action and its probability, the timings."""
        best = self.timeline.argmax(dim=1).tolist()
        return {"ranking": [{"class": c, "probability": round(p, 6)} for c, p in self.ranking.items()],
                "timeline": [{"frame": t, "action": self.classes[k],
                              "probability": round(float(self.timeline[t, k]), 6)} for t, k in enumerate(best)],
                "seconds": {k: round(v, 3) for k, v in self.seconds.items()}}


def read_upload(path: str | os.PathLike | None, frames: int = TIMELINE_FRAMES) -> torch.Tensor:
    """The uploaded clip's frames, checked: none, another medium, or an unreadable video is one line."""
    if path is None or not str(path).strip():
        raise ConfigError("video: upload a video file (.mp4, .webm, .avi ...)")
    if media_kind(path) != "video":
        raise ConfigError(f"video {Path(path).name}: not a video file (expected .mp4, .webm, .avi ...)")
    return read_video(path, FrameSampling(frames))


@torch.no_grad()
def action_timeline(bundle: Any, frames: torch.Tensor, classes: Sequence[str], templates: str = "actionclip",
                    half_window: int = HALF_WINDOW) -> tuple[torch.Tensor, torch.Tensor]:
    """(C,) whole-clip probabilities and (T, C) per-frame ones: frame t's row scores the meanP of frames
    ``t - half_window .. t + half_window`` (clipped to the clip) against each action's prompt ensemble."""
    if half_window < 0:
        raise ConfigError(f"half window {half_window}: expected frames either side >= 0")
    if not classes:
        raise ConfigError("classes: empty list")
    size, mean, std = model_image_stats(bundle.model)
    view = center_view(frames, size, mean, std)[None].to(bundle.device)
    per_frame = encode_frames(bundle.model, view)[0].float()
    steps = per_frame.shape[0]
    pooled = torch.cat([mean_pool(per_frame[max(0, t - half_window):t + half_window + 1][None])
                        for t in range(steps)] + [mean_pool(per_frame[None])])
    classifier = text_classifier(bundle, list(classes), TEMPLATE_SETS.get(templates, templates)).float()
    probs = (bundle.model.logit_scale.exp().float() * pooled @ classifier.T).float().softmax(dim=-1).cpu()
    return probs[-1], probs[:-1]


def timeline_picture(frames: torch.Tensor, timeline: torch.Tensor, classes: Sequence[str]) -> Image.Image:
    """Thumbnails of the frames over a (classes x frames) grid, each cell as bright as the action's probability
    at that frame, the best action of each frame outlined."""
    steps, label = timeline.shape[0], 8 * max(len(c) for c in classes) + 8
    picture = Image.new("RGB", (label + steps * THUMB, THUMB + len(classes) * 20), "white")
    draw = ImageDraw.Draw(picture)
    for t in range(steps):
        picture.paste(Image.fromarray(frames[t].numpy()).resize((THUMB, THUMB)), (label + t * THUMB, 0))
    best = timeline.argmax(dim=1)
    for k, name in enumerate(classes):
        top = THUMB + k * 20
        draw.text((4, top + 4), name, fill="black")
        for t in range(steps):
            level = int(255 * (1 - float(timeline[t, k])))
            box = (label + t * THUMB, top, label + (t + 1) * THUMB - 1, top + 19)
            draw.rectangle(box, fill=(level, level, 255), outline="black" if int(best[t]) == k else None)
    return picture


def watch(analyser: Analyser, request: VideoRequest) -> Watched:
    """The clip's zero-shot actions, whole and per frame, and the timeline picture."""
    classes = parse_classes(request.classes)
    frames = read_upload(request.video)
    start = time.perf_counter()
    with analyser._lock, use_text_cache(analyser.text_cache):   # noqa: SLF001 - one request at a time, as analyse
        bundle = analyser.models.bundle(request.model, request.pretrained)
        whole, timeline = action_timeline(bundle, frames, classes, request.templates, request.half_window)
    ranking = dict(sorted(zip(classes, whole.tolist()), key=lambda item: -item[1]))
    return Watched(ranking, classes, timeline, timeline_picture(frames, timeline, classes),
                   {"timeline": time.perf_counter() - start})


def make_video_handler(analyser: Analyser, error_text: Callable[[Exception], str]):
    """The video tab's callback: (message, whole-clip ranking, timeline picture, JSON summary)."""
    def watch_tab(video: str | None, classes: str, half_window: float, model: str, pretrained: str) -> tuple[Any, ...]:
        try:
            request = VideoRequest(video, classes, model, pretrained or None, half_window=int(half_window))
            watched = watch(analyser, request)
            top = next(iter(watched.ranking))
            return (f"The clip as a whole: **{top}** ({watched.ranking[top]:.0%}). Below, frame by frame: each "
                    f"column scores the {2 * request.half_window + 1} frames around it; the outlined cell is its "
                    "best action.", watched.ranking, watched.picture, watched.summary())
        except Exception as exc:   # one line on the page (a user error's own line; else the server logs it)
            return error_text(exc), None, None, {}
    return watch_tab


__all__ = ["HALF_WINDOW", "TIMELINE_FRAMES", "VideoRequest", "Watched", "action_timeline", "make_video_handler",
           "read_upload", "timeline_picture", "watch"]
