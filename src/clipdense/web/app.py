"""The page itself, in Gradio: upload a photo (or pick a world scene), name classes, see them.

Layout: inputs on the left (photo, class names, heatmap prompt, model / pretrained / dense mode /
templates, a head when the server found any, the thresholds), pictures on the right (overlay, legend,
heatmap, whole-image ranking, detections when a detector head exists, the JSON summary). The button's
event is also the HTTP API ``/analyse`` (Gradio's ``/gradio_api/call/analyse``). Gradio serves its
frontend from the installed package; analytics are switched off, so the page works offline.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")   # no calls home (also read at gradio import)

import gradio as gr  # noqa: E402

from ..errors import ClipDenseError  # noqa: E402
from ..models import DENSE_MODES, TEMPLATE_SETS  # noqa: E402
from ..models.registry import shipped_weights  # noqa: E402
from .analysis import Analyser, Analysis, Request  # noqa: E402
from .draw import DrawRequest, draw_frames  # noqa: E402
from .examples import world_examples  # noqa: E402
from .heads import HeadChoice  # noqa: E402
from .render import View, legend_html, message, render  # noqa: E402
from .sound_page import sound_tab  # noqa: E402
from .video_page import video_tab  # noqa: E402

LOG = logging.getLogger("clipdense.web")
NO_HEAD = "none (zero-shot)"
DETECTION_COLUMNS = ["class", "score", "x0", "y0", "x1", "y1"]
CSS = ".legend {font-size: 0.95em} #message p {margin: 0.2em 0}"


@dataclass
class PageSettings:
    """What ``clipdense serve`` decides once for the page (the user changes the rest on the page)."""

    model: str = "tiny-vit-t8"
    pretrained: str | None = "synthworld"
    mode: str = "maskclip"
    templates: str = "imagenet"
    device: str | None = None
    max_side: int = 1024
    heads: list[HeadChoice] = field(default_factory=list)
    examples: int = 4
    text_cache: bool = True


def _outputs(analysis: Analysis | None, view: View | None, text: str) -> tuple[Any, ...]:
    """(state, message, overlay, legend, heatmap, ranking, detections, summary, depth) for the page."""
    if analysis is None or view is None:
        return None, text, None, "", None, None, [], {}, None
    rows = [[d["class"], d["score"], *d["box"]] for d in view.detections]
    return (analysis, text, view.overlay, legend_html(view.legend), view.heatmap, analysis.ranking, rows,
            view.summary, view.depth)


def model_choices(current: str) -> list[str]:
    """The model menu: every model with shipped weights (tiny-vit-t8, tiny-groupvit, ...) and the page's own."""
    return sorted({name for name, _ in shipped_weights()} | {current})


def _error_text(exc: Exception) -> str:
    """What the page says when a request fails: the one-line user error, or that something broke."""
    if isinstance(exc, ClipDenseError):
        return f"**Error:** {exc}"
    LOG.exception("the page's request failed")
    return f"**Something went wrong** ({type(exc).__name__}); the server's log has the details."


def make_handlers(analyser: Analyser):
    """The page's two callbacks: analyse a request, and redraw the last analysis at new thresholds."""
    def analyse(photo: str | None, classes: str, heatmap: str, model: str, pretrained: str, mode: str,
                templates: str, head: str | None, threshold: float, min_score: float) -> tuple[Any, ...]:
        try:
            request = Request(photo, classes, model, pretrained or None, mode, templates,
                              None if head in (None, NO_HEAD) else head, heatmap or "")
            analysis = analyser(request)
            view = render(analysis, float(threshold), float(min_score))
            return _outputs(analysis, view, message(analysis, view))
        except Exception as exc:   # the page shows one line; tracebacks go to the server's log
            return _outputs(None, None, _error_text(exc))

    def redraw(analysis: Analysis | None, threshold: float, min_score: float) -> tuple[Any, ...]:
        if analysis is None:
            return _outputs(None, None, "Press **Analyse** first.")
        view = render(analysis, float(threshold), float(min_score))
        return _outputs(analysis, view, message(analysis, view))

    return analyse, redraw


def make_draw_handler(analyser: Analyser):
    """The draw tab's callback: a generator of (picture, message), one per frame as the picture forms."""
    def draw_tab(prompt: str, method: str, steps: float, strokes: float, model: str, pretrained: str):
        try:
            request = DrawRequest(prompt, method, int(steps), int(strokes))
            bundle = analyser.models.bundle(model, pretrained or None)
            for frame in draw_frames(bundle, request):
                loss = "" if frame.loss is None else f", loss {frame.loss:.4f}"
                yield frame.image, f"step {frame.step} / {frame.steps}{loss}"
        except Exception as exc:   # one line on the page
            yield None, _error_text(exc)
    return draw_tab


def _draw_tab(analyser: Analyser, model: Any, pretrained: Any) -> None:
    """The draw tab: a prompt -> CLIPDraw strokes or a VQGAN-CLIP picture, shown as it forms."""
    with gr.Tabs():
        with gr.Tab("draw"):
            with gr.Row():
                with gr.Column(scale=1):
                    prompt = gr.Textbox(label="what to draw", placeholder="a red circle above a blue star",
                                        elem_id="draw-prompt")
                    method = gr.Radio(["clipdraw", "vqgan"], value="clipdraw", label="method (vector strokes, or "
                                      "a VQGAN's latent)", elem_id="draw-method")
                    steps = gr.Slider(10, 500, value=100, step=10, label="steps", elem_id="draw-steps")
                    strokes = gr.Slider(1, 128, value=32, step=1, label="strokes (clipdraw)", elem_id="draw-strokes")
                    go = gr.Button("Draw", variant="primary", elem_id="draw-run")
                with gr.Column(scale=2):
                    note = gr.Markdown(elem_id="draw-message")
                    picture = gr.Image(label="the picture as it forms", type="pil", format="png", interactive=False,
                                       elem_id="draw-picture")
            go.click(make_draw_handler(analyser), [prompt, method, steps, strokes, model, pretrained],
                     [picture, note], api_name="draw")


def build_app(settings: PageSettings) -> gr.Blocks:
    """The page (not started: ``serve`` launches it)."""
    analyser = Analyser(settings.heads, settings.device, settings.max_side, settings.text_cache)
    analyse, redraw = make_handlers(analyser)
    detectors = any(choice.use.name in ("detection", "grounding") for choice in settings.heads)
    head_choices = [(NO_HEAD, NO_HEAD)] + [(choice.label, str(choice.path)) for choice in settings.heads]
    # uploads and drawn pictures are deleted an hour after they were made (checked hourly)
    with gr.Blocks(title="clipdense", analytics_enabled=False, delete_cache=(3600, 3600)) as app:
        gr.Markdown("## clipdense — what is where in your photo\nUpload a photo, name what to look for "
                    "(comma-separated), press **Analyse**.")
        state = gr.State(None)
        with gr.Row():
            with gr.Column(scale=1):
                photo = gr.File(label="photo", type="filepath", elem_id="photo")
                classes = gr.Textbox(label="class names", placeholder="red circle, blue star, sky, grass",
                                     elem_id="classes")
                heatmap_prompt = gr.Textbox(label="heatmap of (a prompt; empty: the first class) — with a grounding head: "
                                                  "the sentence whose phrases are boxed, or a question ending in '?' "
                                                  "(a head with a VQA part answers it)",
                                            elem_id="heatmap-prompt")
                with gr.Accordion("model", open=False):
                    model = gr.Dropdown(model_choices(settings.model), value=settings.model, allow_custom_value=True,
                                        label="model (the shipped ones, or type any name or file)", elem_id="model")
                    pretrained = gr.Textbox(settings.pretrained or "", label="pretrained tag or file",
                                            elem_id="pretrained")
                    mode = gr.Dropdown(sorted(DENSE_MODES), value=settings.mode, label="dense mode")
                    templates = gr.Dropdown(sorted(TEMPLATE_SETS), value=settings.templates, label="prompt templates",
                                            allow_custom_value=True)
                head = gr.Dropdown(head_choices, value=NO_HEAD, label="trained head", visible=len(head_choices) > 1,
                                   elem_id="head")
                threshold = gr.Slider(0.0, 1.0, value=0.0, step=0.01, label="background threshold "
                                      "(top class probability below it: background)", elem_id="threshold")
                min_score = gr.Slider(0.0, 1.0, value=0.3, step=0.01, label="minimum detection score",
                                      visible=detectors, elem_id="min-score")
                run = gr.Button("Analyse", variant="primary", elem_id="run")
            with gr.Column(scale=2):
                note = gr.Markdown(elem_id="message")
                overlay = gr.Image(label="overlay", type="pil", format="png", interactive=False, elem_id="overlay")
                legend = gr.HTML(elem_id="legend")
                with gr.Row():
                    heatmap = gr.Image(label="heatmap", type="pil", format="png", interactive=False, elem_id="heatmap")
                    ranking = gr.Label(label="whole image", num_top_classes=5, elem_id="ranking")
                depth = gr.Image(label="depth (DepthCLIP, training-free; yellow near, purple far)", type="pil",
                                 format="png", interactive=False, elem_id="depth")
                detections = gr.Dataframe(headers=DETECTION_COLUMNS, label="detections", visible=detectors,
                                          interactive=False, elem_id="detections")
                with gr.Accordion("details (JSON)", open=False):
                    summary = gr.JSON(elem_id="summary")
        if settings.examples:
            gr.Examples([list(pair) for pair in world_examples(settings.examples)], inputs=[photo, classes],
                        label="scenes of the synthetic world the shipped model knows")
        outputs = [state, note, overlay, legend, heatmap, ranking, detections, summary, depth]
        run.click(analyse, [photo, classes, heatmap_prompt, model, pretrained, mode, templates, head, threshold,
                            min_score], outputs, api_name="analyse")
        for slider in (threshold, min_score):
            slider.release(redraw, [state, threshold, min_score], outputs, api_visibility="private")
        _draw_tab(analyser, model, pretrained)
        sound_tab(analyser, model, pretrained, templates, _error_text)
        video_tab(analyser, model, pretrained, _error_text)
    return app


def serve(settings: PageSettings, host: str = "127.0.0.1", port: int = 7860, block: bool = True) -> gr.Blocks:
    """Start the page on ``host:port`` (``block``: until interrupted; else return the running app)."""
    from .examples import examples_folder
    app = build_app(settings)
    app.queue(default_concurrency_limit=1)
    app.launch(server_name=host, server_port=port, prevent_thread_lock=not block, quiet=True, show_error=False,
               inbrowser=False, share=False, css=CSS, allowed_paths=[str(examples_folder())],
               max_file_size="64mb", footer_links=[])
    return app


__all__ = ["NO_HEAD", "PageSettings", "build_app", "make_handlers", "serve"]
