"""`clipdense export MODEL|RUN --format onnx --out DIR`: the image tower (dense modes), the text tower, a text
classifier and a segmentation head as ONNX graphs (``tasks.export``); `segment` / `classify --runtime onnx --onnx
DIR` then run them on onnxruntime."""
from __future__ import annotations

import argparse
import time

from ..errors import ConfigError
from ..heads.expect import expect_head
from ..models import DENSE_MODES
from .common import DEVICE, add_cache_flag, check_templates, parse_class_list
from .outputs import check_out_folder

FORMATS = ("onnx",)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("export", help="export a model (and a segmentation head) as ONNX graphs",
                              description="Writes DIR/image-<mode>.onnx (dynamic batch and image size), "
                                          "DIR/text.onnx, DIR/classes.npy with --classes, DIR/head.onnx with "
                                          "--head, and DIR/export.json.")
    p.add_argument("model", help="open_clip name, hf-hub:org/repo, built-in tiny name, .safetensors file or run dir")
    p.add_argument("--pretrained", default=None, help="open_clip pretrained tag or a local weights file")
    p.add_argument("--format", required=True, choices=FORMATS, help="graph format")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--modes", default="maskclip",
                   help=f"comma-separated dense modes, one image graph each (of {', '.join(sorted(DENSE_MODES))}; "
                        "default maskclip)")
    p.add_argument("--classes", default=None, help="comma-separated class names: their text classifier in classes.npy")
    p.add_argument("--templates", default="imagenet", help="prompt set or '{}' template of --classes")
    p.add_argument("--head", default=None, help="a segmentation head (file or run dir) trained on these weights")
    p.add_argument("--no-text", action="store_true", help="leave out the text tower (text.onnx)")
    p.add_argument("--device", type=DEVICE, default="cpu", help="device the export traces on (default cpu)")
    add_cache_flag(p)
    p.set_defaults(func=run_export)


def parse_modes(text: str) -> list[str]:
    """Dense mode names, each registered (one line naming the flag otherwise)."""
    modes = [mode.strip() for mode in text.split(",") if mode.strip()]
    unknown = [mode for mode in modes if mode not in DENSE_MODES]
    if unknown or not modes:
        raise ConfigError(f"--modes {text!r}: expected comma-separated dense modes among {sorted(DENSE_MODES)}")
    return list(dict.fromkeys(modes))


def run_export(args: argparse.Namespace) -> int:
    from ..models import load_model
    from ..tasks.export import export_onnx
    from ..tasks.segment import resolve_head

    check_out_folder(args.out, "--out", "a folder for the graphs")
    modes = parse_modes(args.modes)
    classes = parse_class_list(args.classes) if args.classes is not None else None
    check_templates(args.templates)
    if args.head:
        expect_head(args.head, "segmenter", "--head")   # its kind, before the model loads
    bundle = load_model(args.model, args.pretrained, args.device)
    head = resolve_head(bundle, args.head) if args.head else None
    start = time.perf_counter()
    result = export_onnx(bundle, args.out, modes, classes, args.templates, head, text=not args.no_text)
    print(f"exported {args.model} to {result.folder} in {time.perf_counter() - start:.1f}s: "
          f"{', '.join(result.files)}")
    for name, why in result.skipped.items():
        print(f"left out {name}: {why}")
    return 0
