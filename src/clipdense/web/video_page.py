"""The page's video tab in Gradio: upload a clip, name actions, see them for the whole clip and as a per-frame
timeline (``web.video`` does the work; the button is also the HTTP API ``/watch``)."""
from __future__ import annotations

from typing import Any, Callable

import gradio as gr

from .analysis import Analyser
from .video import HALF_WINDOW, VideoRequest, watch


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


def video_tab(analyser: Analyser, model: Any, pretrained: Any, error_text: Callable[[Exception], str]) -> None:
    """The video tab: a clip -> its zero-shot actions, whole and per frame."""
    with gr.Tabs():
        with gr.Tab("video"):
            with gr.Row():
                with gr.Column(scale=1):
                    video = gr.File(label="video (MP4, WebM, AVI)", type="filepath", elem_id="video")
                    classes = gr.Textbox(label="action names", placeholder="moves left, grows, spins, blinks",
                                         elem_id="video-classes")
                    window = gr.Slider(0, 4, value=HALF_WINDOW, step=1, label="frames either side of each moment",
                                       elem_id="video-window")
                    go = gr.Button("Watch", variant="primary", elem_id="video-run")
                with gr.Column(scale=2):
                    note = gr.Markdown(elem_id="video-message")
                    ranking = gr.Label(label="the whole clip (zero-shot, ActionCLIP's templates)", num_top_classes=5,
                                       elem_id="video-ranking")
                    timeline = gr.Image(label="timeline", type="pil", format="png", interactive=False,
                                        elem_id="video-timeline")
                    with gr.Accordion("details (JSON)", open=False):
                        summary = gr.JSON(elem_id="video-summary")
            go.click(make_video_handler(analyser, error_text), [video, classes, window, model, pretrained],
                     [note, ranking, timeline, summary], api_name="watch")


__all__ = ["make_video_handler", "video_tab"]
