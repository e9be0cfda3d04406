"""The page's sound tab in Gradio: upload a sound, name classes, see its zero-shot classes and the world scenes that
sound like it (``web.sound`` does the work; the button is also the HTTP API ``/listen``)."""
from __future__ import annotations

from typing import Any, Callable

import gradio as gr

from .analysis import Analyser
from .examples import world_examples
from .sound import SoundRequest, listen

#: world scenes the sound is matched against (the page's example scenes, drawn once and kept)
SCENES = 16


def make_sound_handler(analyser: Analyser, error_text: Callable[[Exception], str], scenes: int = SCENES):
    """The sound tab's callback: (message, ranking, nearest pictures with captions, JSON summary)."""
    def listen_tab(sound: str | None, classes: str, model: str, pretrained: str, templates: str) -> tuple[Any, ...]:
        try:
            pairs = world_examples(scenes)
            names = dict(pairs)
            heard = listen(analyser, SoundRequest(sound, classes, model, pretrained or None, templates),
                           [path for path, _ in pairs])
            gallery = [(path, f"cosine {score:+.3f}: {names[path]}") for path, score in heard.nearest]
            top = next(iter(heard.ranking))
            return (f"Heard as **{top}** ({heard.ranking[top]:.0%}); the {len(gallery)} of {len(pairs)} world "
                    "scenes nearest to the sound are below.", heard.ranking, gallery, heard.summary())
        except Exception as exc:   # one line on the page (a user error's own line; else the server logs it)
            return error_text(exc), None, [], {}
    return listen_tab


def sound_tab(analyser: Analyser, model: Any, pretrained: Any, templates: Any,
              error_text: Callable[[Exception], str]) -> None:
    """The sound tab: a sound file -> its zero-shot classes and the nearest world scenes."""
    with gr.Tabs():
        with gr.Tab("sound"):
            with gr.Row():
                with gr.Column(scale=1):
                    sound = gr.File(label="sound (WAV, FLAC, OGG)", type="filepath", elem_id="sound")
                    classes = gr.Textbox(label="class names", placeholder="red circle, blue star, green triangle",
                                         elem_id="sound-classes")
                    go = gr.Button("Listen", variant="primary", elem_id="sound-run")
                with gr.Column(scale=2):
                    note = gr.Markdown(elem_id="sound-message")
                    ranking = gr.Label(label="what it sounds like (zero-shot, text prompts)", num_top_classes=5,
                                       elem_id="sound-ranking")
                    nearest = gr.Gallery(label="world scenes nearest to the sound", columns=4, elem_id="sound-nearest")
                    with gr.Accordion("details (JSON)", open=False):
                        summary = gr.JSON(elem_id="sound-summary")
            go.click(make_sound_handler(analyser, error_text), [sound, classes, model, pretrained, templates],
                     [note, ranking, nearest, summary], api_name="listen")


__all__ = ["SCENES", "make_sound_handler", "sound_tab"]
