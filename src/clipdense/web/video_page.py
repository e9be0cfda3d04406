"""The page's video tab in Gradio: upload a clip, name actions, see them for the whole clip and as a per-frame
timeline (``web.video`` does the work; the button is also the HTTP API ``/watch``)."""
from __future__ import annotations

from typing import Any, Callable

import gradio as gr

from .analysis import Analyser
from .video import HALF_WINDOW, make_video_handler


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


__all__ = ["make_video_handler", "video_tab"]   # the handler lives in web.video (no Gradio needed)
