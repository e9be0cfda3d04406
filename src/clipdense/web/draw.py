"""The page's draw tab without Gradio: a checked request, and the picture as it forms, frame by frame.

The method runs in a worker thread and hands a rendered frame every ``every`` steps through a queue; the caller
(the Gradio handler, a generator) shows each as it arrives. The last frame is the finished drawing.
"""
from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from PIL import Image

from ..errors import ConfigError
from ..generation import DRAW_METHODS, Drawing, draw, render
from ..generation.svg import to_image

#: the page's bounds: a request runs on the server's CPU while the user waits
MAX_STEPS = 1000
MAX_STROKES = 256


@dataclass(frozen=True)
class DrawRequest:
    """What the draw tab asks for; checked on construction (one-line errors for the page)."""

    prompt: str
    method: str = "clipdraw"
    steps: int = 100
    strokes: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.prompt or not self.prompt.strip():
            raise ConfigError("prompt: type what to draw, e.g. 'a red circle above a blue star'")
        if len(self.prompt) > 300:
            raise ConfigError("prompt: at most 300 characters")
        if self.method not in DRAW_METHODS:
            raise ConfigError(f"method {self.method!r}: expected one of {list(DRAW_METHODS)}")
        if not 1 <= int(self.steps) <= MAX_STEPS:
            raise ConfigError(f"steps: expected 1..{MAX_STEPS}, got {self.steps}")
        if not 1 <= int(self.strokes) <= MAX_STROKES:
            raise ConfigError(f"strokes: expected 1..{MAX_STROKES}, got {self.strokes}")


@dataclass
class Frame:
    """One picture on the page: after ``step`` of ``steps`` steps; ``drawing`` is set on the last frame only."""

    step: int
    steps: int
    image: Image.Image
    loss: float | None = None
    drawing: Drawing | None = None


def draw_frames(bundle: Any, request: DrawRequest, every: int = 10, scale: int = 4) -> Iterator[Frame]:
    """Frames of ``request``'s drawing as it forms (every ``every`` steps, upscaled ``scale`` times with nearest
    pixels), then the finished one. An error in the method is raised here, in the caller's thread."""
    frames: queue.Queue = queue.Queue(maxsize=4)
    losses: list[float] = []
    done = object()

    def show(picture: torch.Tensor) -> Image.Image:
        image = to_image(picture)
        return image.resize((image.width * scale, image.height * scale), Image.NEAREST)

    def on_picture(step: int, picture: Any) -> None:
        if (step + 1) % every == 0 and step + 1 < request.steps:
            frames.put(Frame(step + 1, request.steps, show(picture()), losses[-1] if losses else None))

    def work() -> None:
        try:
            strokes = request.strokes if request.method == "clipdraw" else None
            drawing = draw(bundle, request.prompt.strip(), strokes=strokes, steps=request.steps, seed=request.seed,
                           method=request.method, on_step=lambda _, loss: losses.append(loss),
                           on_picture=on_picture)
            frames.put(Frame(request.steps, request.steps, show(render(drawing)), losses[-1], drawing))
        except BaseException as exc:      # handed to the caller's thread
            frames.put(exc)
        frames.put(done)

    threading.Thread(target=work, name="clipdense-draw", daemon=True).start()
    while (item := frames.get()) is not done:
        if isinstance(item, BaseException):
            raise item
        yield item


__all__ = ["DrawRequest", "Frame", "draw_frames"]
