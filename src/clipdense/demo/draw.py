"""`clipdense demo draw`: CLIP-guided drawing and sketching with the shipped tiny CLIP (about a minute on 2 cores).

CLIPDraw draws three prompts from random strokes (the CLIP score of each drawing before and after), VQGAN-CLIP
paints two with the shipped VQGAN, and CLIPasso
sketches two photos of a freshly written world (saliency map, sketch, its loss). Everything goes to ``out``: the SVG
and PNG of each picture and ``report.md`` with them.
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import torch
from PIL import Image

from ..config import atomic_write_bytes
from ..data import SynthConfig, write_world
from ..generation.clipasso import SketchOptions, photo_tensor, saliency_map, sketch
from ..generation.clipdraw import DrawOptions, clipdraw
from ..generation.guidance import ClipGuide
from ..generation.raster import render
from ..generation.svg import to_image, write_png, write_svg
from ..generation.vqgan import VQGANClipOptions, load_vqgan, start_latent, vqgan_clip
from ..models import load_model

PROMPTS = ("a red circle", "a blue star", "a green house")
SKETCH_CLASSES = ("yellow heart", "snowman")
DRAW = dict(strokes=16, steps=150, canvas=64)
SKETCH = dict(strokes=16, steps=120)
VQGAN_PROMPTS = ("a red circle", "a red circle above a blue star")
VQGAN = dict(steps=100, canvas=64)


def _drawings(guide: ClipGuide, out: Path, log: Callable[[str], None]) -> list[str]:
    lines = ["## CLIPDraw", "", f"{DRAW['strokes']} strokes, {DRAW['steps']} steps, {DRAW['canvas']} px canvas, "
             "4 augmented views per step, the paper's negative prompts.", "",
             "| prompt | start | drawing | CLIP score start → end |", "|---|---|---|---|"]
    for index, prompt in enumerate(PROMPTS):
        start = time.perf_counter()
        options = DrawOptions(**DRAW, seed=index)
        first, _ = clipdraw(guide.bundle, prompt, replace(options, steps=1, lr_points=0.0, lr_width=0.0, lr_colour=0.0))
        drawing, _ = clipdraw(guide.bundle, prompt, options)
        stem = prompt.replace(" ", "-")
        write_svg(drawing, out / f"{stem}.svg")
        write_png(drawing, out / f"{stem}.png", scale=2)
        write_png(first, out / f"{stem}-start.png", scale=2)
        before, after = (float(guide.score(render(d)[None], [prompt])) for d in (first, drawing))
        lines.append(f"| {prompt} | ![]({stem}-start.png) | ![]({stem}.png) ([svg]({stem}.svg)) | "
                     f"{before:.3f} → {after:.3f} |")
        log(f"draw {prompt!r}: CLIP score {before:.3f} -> {after:.3f} ({time.perf_counter() - start:.0f} s)")
    return lines


def _vqgan_pictures(guide: ClipGuide, out: Path, log: Callable[[str], None]) -> list[str]:
    lines = ["", "## VQGAN-CLIP", "", f"The shipped VQGAN's latent ({VQGAN['canvas']} px picture), {VQGAN['steps']} "
             "steps, 8 cutouts per step, from random tokens; the second prompt names a relation.", "",
             "| prompt | start | picture | CLIP score start → end |", "|---|---|---|---|"]
    vqgan = load_vqgan()
    for index, prompt in enumerate(VQGAN_PROMPTS):
        start = time.perf_counter()
        with torch.no_grad():
            first = vqgan.decode(start_latent(vqgan, VQGAN["canvas"], torch.Generator().manual_seed(index)))[0]
        drawing, _ = vqgan_clip(guide.bundle, prompt, VQGANClipOptions(**VQGAN, seed=index), vqgan=vqgan)
        stem = "vqgan-" + prompt.replace(" ", "-")
        write_svg(drawing, out / f"{stem}.svg")
        write_png(drawing, out / f"{stem}.png", scale=2)
        to_image(first.clamp(0, 1)).resize((2 * VQGAN["canvas"],) * 2, Image.NEAREST).save(out / f"{stem}-start.png")
        before = float(guide.score(first.clamp(0, 1)[None], [prompt]))
        after = float(guide.score(render(drawing)[None], [prompt]))
        lines.append(f"| {prompt} | ![]({stem}-start.png) | ![]({stem}.png) ([svg]({stem}.svg)) | "
                     f"{before:.3f} → {after:.3f} |")
        log(f"vqgan {prompt!r}: CLIP score {before:.3f} -> {after:.3f} ({time.perf_counter() - start:.0f} s)")
    return lines


def _sketches(guide: ClipGuide, world: Path, out: Path, log: Callable[[str], None]) -> list[str]:
    lines = ["", "## CLIPasso", "", f"{SKETCH['strokes']} black strokes, {SKETCH['steps']} steps, best of 2 seeds; "
             "strokes start where the dense relevance map (cos of patch and image embedding) is high.", "",
             "| photo | relevance | sketch | loss |", "|---|---|---|---|"]
    for name in SKETCH_CLASSES:
        start = time.perf_counter()
        photo = Image.open(next((world / "classify" / "val" / name).glob("*.png"))).convert("RGB")
        stem = name.replace(" ", "-")
        picture = photo_tensor(photo, 128)
        to_image(picture).save(out / f"{stem}-photo.png")
        to_image(saliency_map(guide, picture)[None].expand(3, -1, -1)).save(out / f"{stem}-relevance.png")
        drawing = sketch(guide.bundle, photo, options=SketchOptions(seeds=2), **SKETCH)
        write_svg(drawing, out / f"{stem}-sketch.svg")
        write_png(drawing, out / f"{stem}-sketch.png")
        lines.append(f"| ![]({stem}-photo.png) | ![]({stem}-relevance.png) | ![]({stem}-sketch.png) "
                     f"([svg]({stem}-sketch.svg)) | {float(drawing.meta['loss']):.3f} |")
        log(f"sketch {name}: loss {drawing.meta['loss']} ({time.perf_counter() - start:.0f} s)")
    return lines


def run_draw_demo(out: Path, log: Callable[[str], None]) -> Path:
    """Draw, sketch, and write ``out/report.md``."""
    torch.manual_seed(0)
    out.mkdir(parents=True, exist_ok=True)
    begin = time.perf_counter()
    guide = ClipGuide(load_model("tiny-vit-t8", pretrained="synthworld", device="cpu"))
    world = out / "world"
    if not (world / "world.json").exists():
        write_world(SynthConfig(out=str(world), train=1, val=1, image_size=128, seed=1, classify_train_per_class=0,
                                classify_val_per_class=1))
    lines = ["# clipdense demo draw", "", "CLIP-guided generation with the shipped `tiny-vit-t8` / `synthworld` CLIP "
             "(64 px input), on this machine's CPU. Scores are the guiding CLIP's own: a drawing optimised against "
             "a CLIP is scored higher by it than by any other (see docs/results/generation.md for a judge).", ""]
    lines += _drawings(guide, out, log)
    lines += _vqgan_pictures(guide, out, log)
    lines += _sketches(guide, world, out, log)
    lines += ["", f"Total: {time.perf_counter() - begin:.0f} s."]
    report = out / "report.md"
    atomic_write_bytes(report, ("\n".join(lines) + "\n").encode())
    return report
