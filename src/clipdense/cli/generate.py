"""`clipdense draw` (CLIPDraw: a prompt → vector strokes; VQGAN-CLIP: a prompt → a VQGAN's picture) and
`clipdense sketch` (CLIPasso: a photo → a sketch).

    clipdense draw "a red circle above a blue star" --out drawing.svg [--strokes 64] [--steps 200]
    clipdense draw "a red circle above a blue star" --method vqgan --out picture.svg   (VQGAN-CLIP)
    clipdense sketch PHOTO --strokes 16 --out sketch.svg
Both write the SVG and a PNG beside it, and show progress with an ETA.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

from tqdm import tqdm

from ..data.images import open_image
from ..errors import ConfigError
from .common import COUNT, PIXELS, SEED, STEPS, add_model_args, check_out_file, load_cli_model
from .outputs import check_beside


def register(subparsers: argparse._SubParsersAction) -> None:
    draw = subparsers.add_parser("draw", help="CLIPDraw (vector strokes) or VQGAN-CLIP (a VQGAN's latent) optimised "
                                              "to match a prompt -> SVG + PNG")
    draw.add_argument("prompt", help="what to draw, e.g. 'a red circle above a blue star'")
    draw.add_argument("--out", default="drawing.svg", help="SVG file (a PNG of it is written beside it)")
    draw.add_argument("--method", default="clipdraw", choices=("clipdraw", "vqgan"),
                      help="clipdraw (default): vector strokes; vqgan: VQGAN-CLIP, a raster picture (its SVG embeds "
                           "the PNG)")
    draw.add_argument("--vqgan", default=None, help="with --method vqgan: a VQGAN head file or run dir "
                                                    "(default: the one shipped with tiny-vit-t8/synthworld)")
    draw.add_argument("--strokes", type=COUNT, default=None, help="number of paths (default 64; clipdraw only)")
    draw.add_argument("--steps", type=STEPS, default=200, help="optimisation steps (default 200; the paper: 1000)")
    draw.add_argument("--canvas", type=PIXELS, default=None,
                      help="canvas side in pixels (default 128 for clipdraw, 64 for vqgan)")
    draw.add_argument("--augmentations", type=int, default=None, choices=range(0, 17), metavar="0..16",
                      help="augmented views (cutouts) per step (default 4 for clipdraw, the paper's; 8 for vqgan; "
                           "0 = none)")
    draw.add_argument("--seed", type=SEED, default=0, help="random seed of the initial strokes and views")
    add_model_args(draw)
    draw.set_defaults(func=run_draw)

    sk = subparsers.add_parser("sketch", help="CLIPasso: a photo as a sketch of a few black strokes -> SVG + PNG")
    sk.add_argument("photo", help="image file")
    sk.add_argument("--out", default="sketch.svg", help="SVG file (a PNG of it is written beside it)")
    sk.add_argument("--strokes", type=COUNT, default=16, help="number of strokes: fewer = more abstract (default 16)")
    sk.add_argument("--steps", type=STEPS, default=200, help="optimisation steps per seed (default 200)")
    sk.add_argument("--seeds", type=COUNT, default=2, help="runs from different seeds; the lowest loss is kept")
    sk.add_argument("--canvas", type=PIXELS, default=128, help="canvas side in pixels (default 128)")
    sk.add_argument("--init", default="saliency", choices=("saliency", "random"),
                    help="stroke starts: sampled from the dense relevance map (default) or uniform")
    sk.add_argument("--background", default="relevance", choices=("relevance", "keep"),
                    help="relevance (default): paint the photo white where the dense relevance map is low, as the "
                         "paper removes backgrounds; keep: sketch the photo as it is")
    sk.add_argument("--layers", default=None,
                    help="comma-separated image-tower blocks of the perceptual loss (default: CLIPasso's depth)")
    sk.add_argument("--seed", type=SEED, default=0, help="first seed")
    add_model_args(sk)
    sk.set_defaults(func=run_sketch)


def _check_prompt(prompt: str) -> str:
    if not prompt.strip():
        raise ConfigError("prompt: expected some words, got an empty prompt")
    return prompt.strip()


def _parse_layers(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        layers = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"--layers {text!r}: expected comma-separated block indices, e.g. 0,1") from None
    if not layers:
        raise ConfigError(f"--layers {text!r}: expected at least one block index")
    return layers


def _write(drawing, out: Path, command: str, seconds: float, extra: str) -> None:
    from ..generation import write_png, write_svg

    write_svg(drawing, out)
    png = write_png(drawing, out.with_suffix(".png"), scale=2)
    what = f"{len(drawing.paths)} strokes" if drawing.raster is None else "VQGAN picture, {}x{} px".format(
        *drawing.size[::-1])
    print(f"{command}: {out} and {png} ({what}, {seconds:.1f} s{extra})")


def _draw_options(args: argparse.Namespace):
    """The chosen method's options from the flags (a flag the method has no use for is refused)."""
    from ..generation.clipdraw import DrawOptions
    from ..generation.guidance import Augmentations
    from ..generation.vqgan import VQGANClipOptions

    if args.method == "vqgan":
        if args.strokes is not None:
            raise ConfigError("--strokes: --method vqgan draws a raster picture, not strokes; leave --strokes out")
        options = VQGANClipOptions(steps=args.steps, seed=args.seed, vqgan=args.vqgan, canvas=args.canvas or 64)
        return replace(options, cutouts=options.cutouts if args.augmentations is None else args.augmentations)
    if args.vqgan is not None:
        raise ConfigError("--vqgan: only --method vqgan uses a VQGAN")
    count = 4 if args.augmentations is None else args.augmentations
    return DrawOptions(strokes=args.strokes or 64, steps=args.steps, canvas=args.canvas or 128, seed=args.seed,
                       augment=replace(Augmentations(), count=count))


def run_draw(args: argparse.Namespace) -> int:
    from ..generation.clipdraw import clipdraw
    from ..generation.guidance import ClipGuide
    from ..generation.raster import render
    from ..generation.vqgan import load_vqgan, vqgan_clip

    prompt = _check_prompt(args.prompt)
    out = check_out_file(args.out, suffixes=(".svg",))
    check_beside("--out", out, [out, out.with_suffix(".png")])
    options = _draw_options(args)
    vqgan = load_vqgan(args.vqgan) if args.method == "vqgan" else None   # a bad file fails before the model loads
    bundle = load_cli_model(args)
    start = time.perf_counter()
    with tqdm(total=args.steps, unit="step", desc=args.method, dynamic_ncols=True, mininterval=1.0) as bar:
        def on_step(_: int, loss: float) -> None:
            bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
            bar.update()
        if vqgan is not None:
            drawing, _ = vqgan_clip(bundle, prompt, options, on_step, vqgan=vqgan.to(bundle.device))
        else:
            drawing, _ = clipdraw(bundle, prompt, options, on_step)
    score = float(ClipGuide(bundle).score(render(drawing)[None], [prompt])[0, 0])
    _write(drawing, out, "draw", time.perf_counter() - start, f", CLIP score {score:.3f}")
    return 0


def run_sketch(args: argparse.Namespace) -> int:
    from ..generation.clipasso import SketchOptions, sketch
    from ..models import tower_facts

    out = check_out_file(args.out, suffixes=(".svg",))
    check_beside("--out", out, [out, out.with_suffix(".png")])
    layers = _parse_layers(args.layers)
    photo = open_image(args.photo)
    options = SketchOptions(canvas=args.canvas, init=args.init, layers=layers, seeds=args.seeds, seed=args.seed,
                            background=args.background)
    bundle = load_cli_model(args)
    depth = tower_facts(bundle.model).num_blocks
    if layers is not None and not all(-depth <= layer < depth for layer in layers):
        raise ConfigError(f"--layers {args.layers}: this {depth}-block image tower has blocks 0..{depth - 1} "
                          "(or -1 for the last)")
    start = time.perf_counter()
    with tqdm(total=args.steps * args.seeds, unit="step", desc="sketch", dynamic_ncols=True, mininterval=1.0) as bar:
        def on_step(seed: int, _: int, loss: float) -> None:
            bar.set_postfix(seed=seed, loss=f"{loss:.4f}", refresh=False)
            bar.update()
        drawing = sketch(bundle, photo, args.strokes, args.steps, options, on_step)
    _write(drawing, out, "sketch", time.perf_counter() - start, f", loss {drawing.meta['loss']}")
    return 0
