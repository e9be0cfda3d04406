"""`clipdense depth IMAGE --out depth.png`: DepthCLIP's training-free metric depth of one image."""
from __future__ import annotations

import argparse
import time

from ..data.formats.nyudepth import write_depth_png
from ..data.images import open_image
from ..models import DENSE_MODES
from ..tasks.depth import DepthClipConfig, depth
from .common import PIXELS, POSITIVE, add_cache_flag, add_model_args, check_out_file, load_cli_model


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("depth", help="training-free monocular depth of one image (DepthCLIP) -> 16-bit PNG "
                                            "in millimetres")
    p.add_argument("image", help="image file")
    p.add_argument("--out", default="depth.png", help="depth PNG to write (16-bit, millimetres, NYU-style)")
    p.add_argument("--mode", default="maskclip", choices=sorted(DENSE_MODES), help="dense mode of the features")
    p.add_argument("--temperature", type=POSITIVE, default=0.1, help="softmax temperature over the distance words")
    p.add_argument("--short-side", type=PIXELS, default=None, help="short side the image is encoded at "
                                                                   "(default: the model's input size)")
    add_model_args(p)
    add_cache_flag(p)
    p.set_defaults(func=run_depth)


def run_depth(args: argparse.Namespace) -> int:
    out = check_out_file(args.out, suffixes=(".png",))
    image = open_image(args.image)
    bundle = load_cli_model(args)
    start = time.perf_counter()
    metres = depth(bundle, image, DepthClipConfig(temperature=args.temperature, mode=args.mode,
                                                  short_side=args.short_side))
    write_depth_png(out, metres.numpy())
    print(f"depth of {args.image} ({image.width}x{image.height}) in {time.perf_counter() - start:.2f}s: "
          f"{float(metres.min()):.2f} to {float(metres.max()):.2f} m, median {float(metres.median()):.2f} m")
    print(f"wrote {out} (16-bit PNG, millimetres)")
    return 0
