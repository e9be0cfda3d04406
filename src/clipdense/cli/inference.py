"""`clipdense segment` and `clipdense classify` on single images."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from ..config import atomic_save_picture, atomic_write_bytes
from ..data.images import open_image
from ..data.media import media_kind
from ..errors import ConfigError
from ..models import DENSE_MODES
from ..models.segmenters import segmenter_of
from ..tasks import classify, segment, use_audio_tower
from ..heads.adapters import load_adapter
from ..heads.expect import expect_head
from ..tasks.groups import groups_picture
from ..tasks.overlay import label_png, overlay
from ..tasks.segment import resolve_head
from .common import COUNT, PIXELS, PROBABILITY, add_cache_flag, add_model_args, check_out_file, check_templates, \
    load_cli_model, parse_class_list
from .outputs import check_beside
from .folders import add_folder_flags, folder_out, is_folder_run, job_of, report
from .runtime import add_runtime_flags, check_runtime, inference_precision

#: picture formats the overlay can be written in (the raw label map is always a PNG beside it)
OVERLAY_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def register(subparsers: argparse._SubParsersAction) -> None:
    seg = subparsers.add_parser("segment", help="segmentation of one image (zero-shot, or with a trained --head) "
                                                "-> colour overlay")
    seg.add_argument("image", help="image file, or a folder of images (then --out OUTDIR gets one label PNG per "
                                   "image and classes.txt; a second run on the same OUTDIR resumes)")
    seg.add_argument("--classes", required=True, help="comma-separated class names")
    seg.add_argument("--out", default="overlay.png", help="overlay PNG (the raw label map goes next to it)")
    seg.add_argument("--mode", default="maskclip", choices=sorted(DENSE_MODES),
                     help="dense mode (a GroupViT --model segments by its own grouping instead, and also writes "
                          "OUT_groups.png: the groups of each stage)")
    seg.add_argument("--templates", default="imagenet", help="prompt set (imagenet, simple, plain) or '{}' template")
    seg.add_argument("--short-side", type=PIXELS, default=None, help="resize short side before inference")
    seg.add_argument("--window", type=PIXELS, default=None, help="sliding-window size in pixels")
    seg.add_argument("--background-threshold", type=PROBABILITY, default=None,
                     help="pixels whose top class probability is below this are background")
    seg.add_argument("--head", default=None,
                     help="trained segmentation head (Cat-Seg / LSeg .safetensors from `clipdense train --objective "
                          "catseg|lseg`, or its run dir), trained on the --model/--pretrained weights; "
                          "--mode and --templates are then the head's own")
    seg.add_argument("--panoptic", action="store_true",
                     help="with a panoptic --head (`train --objective mask2former`): panoptic segmentation -> the "
                          "overlay with instance outlines, OUT_panoptic.png (COCO panoptic ids) and OUT_panoptic.json")
    seg.add_argument("--stuff", default=None,
                     help="with --panoptic: comma-separated classes that are stuff (one segment per class); classes "
                          "the head trained on keep their own kind, others are things")
    add_model_args(seg)
    add_cache_flag(seg)
    add_folder_flags(seg)
    add_runtime_flags(seg)
    seg.set_defaults(func=run_segment)

    cls = subparsers.add_parser("classify", help="zero-shot classification of one image (or another medium's file: "
                                                 "a point cloud, a sound, a video, where its family is installed)")
    cls.add_argument("image", help="image file, or a file of another registered medium, or a folder of images "
                                   "(then --out OUTDIR gets predictions.csv; a second run on the same OUTDIR resumes)")
    cls.add_argument("--out", default=None, help="with a folder: the output folder")
    cls.add_argument("--classes", default=None,
                     help="comma-separated class names (with --adapter: default the adapter's classes)")
    cls.add_argument("--templates", default="imagenet", help="prompt set or '{}' template")
    cls.add_argument("--top", type=COUNT, default=5, help="how many classes to print")
    cls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    cls.add_argument("--adapter", default=None,
                     help="few-shot adapter head from `clipdense adapt` (.safetensors, or a run dir's latest), "
                          "trained on the --model/--pretrained weights")
    cls.add_argument("--audio-tower", default=None,
                     help="for a sound: the audio tower (audio/audioclip head file or `train --objective audioclip` "
                          "run) trained beside --model/--pretrained; default the one shipped for those weights")
    add_model_args(cls)
    add_cache_flag(cls)
    add_folder_flags(cls)
    add_runtime_flags(cls)
    cls.set_defaults(func=run_classify)


def run_segment(args: argparse.Namespace) -> int:
    exported = check_runtime(args, "head")
    if (args.panoptic or args.stuff) and (exported is not None or is_folder_run(args.image, args)):
        raise ConfigError("--panoptic: one image on the torch runtime (not a folder, not --runtime onnx)")
    if is_folder_run(args.image, args):
        return _segment_folder(args, exported)
    classes = parse_class_list(args.classes)
    out = check_out_file(args.out, suffixes=OVERLAY_SUFFIXES)
    check_beside("--out", out, [out, *_beside(out, args.panoptic)])   # every file it writes, before any work
    if args.head and exported is None:   # the head's kind, before the backbone loads
        expect_head(args.head, "panoptic" if args.panoptic else "segmenter", "--head")
    if not args.head:
        check_templates(args.templates)
    image = open_image(args.image)
    start = time.perf_counter()
    if exported is not None:
        from ..tasks.onnx_runtime import segment_onnx

        labels = segment_onnx(exported, image, classes, args.mode, args.templates, args.short_side, args.window,
                              args.background_threshold)
        return _write_segmentation(args, image, labels, classes, out, time.perf_counter() - start, None)
    if args.panoptic or args.stuff:
        return _segment_panoptic(args, image, classes, out)
    bundle = load_cli_model(args)
    head = resolve_head(bundle, args.head) if args.head else None
    start = time.perf_counter()
    with inference_precision(bundle.device, args.precision):
        labels = segment(bundle, image, classes, mode=args.mode, templates=args.templates,
                         short_side=args.short_side, window=args.window,
                         background_threshold=args.background_threshold, head=head)
    return _write_segmentation(args, image, labels, classes, out, time.perf_counter() - start, bundle)


def _beside(out: Path, panoptic: bool) -> list[Path]:
    """The files `segment IMAGE --out OUT` writes beside OUT (the groups only with a GroupViT model)."""
    if panoptic:
        return [out.with_name(out.stem + "_panoptic.png"), out.with_name(out.stem + "_panoptic.json")]
    return [out.with_name(out.stem + "_labels.png"), out.with_name(out.stem + "_groups.png")]


def _segment_panoptic(args: argparse.Namespace, image: Any, classes: list[str], out: Any) -> int:
    """`clipdense segment IMAGE --head RUN --panoptic`: overlay with outlines, COCO panoptic PNG + JSON."""
    from ..tasks.panoptic import panoptic_json, panoptic_picture, panoptic_png, segment_panoptic

    if not args.panoptic or not args.head:
        raise ConfigError("--stuff goes with --panoptic, and --panoptic needs --head (a panoptic head from "
                          "`clipdense train --objective mask2former`)")
    stuff = parse_class_list(args.stuff, "--stuff") if args.stuff else []
    bundle = load_cli_model(args)
    start = time.perf_counter()
    with inference_precision(bundle.device, args.precision):
        result = segment_panoptic(bundle, image, classes, args.head, stuff)
    elapsed = time.perf_counter() - start
    png, doc = _beside(out, True)
    atomic_save_picture(panoptic_picture(image, result), out)
    atomic_save_picture(panoptic_png(result), png)
    doc_json = panoptic_json(result, png.name)
    atomic_write_bytes(doc, (json.dumps(doc_json, indent=1) + "\n").encode())
    things = sum(s.isthing for s in result.segments)
    print(f"segmented {args.image} ({image.width}x{image.height}) in {elapsed:.2f}s: {things} things, "
          f"{len(result.segments) - things} stuff segments")
    print(f"wrote {out}, {png} and {doc}")
    return 0


def _write_segmentation(args: argparse.Namespace, image: Any, labels: Any, classes: list[str], out: Any,
                        elapsed: float, bundle: Any) -> int:
    """The overlay, the raw label PNG (and a GroupViT model's groups) and the summary line."""
    raw, groups = _beside(out, False)
    atomic_save_picture(overlay(image, labels, classes), out)
    atomic_save_picture(label_png(labels), raw)
    counts = {classes[c]: int((labels == c).sum()) for c in range(len(classes))}
    share = ", ".join(f"{name} {100 * n / labels.numel():.1f}%" for name, n in counts.items() if n)
    print(f"segmented {args.image} ({image.width}x{image.height}) in {elapsed:.2f}s: {share}")
    print(f"wrote {out} and {raw}")
    if bundle is not None and segmenter_of(bundle.model) is not None:   # GroupViT-like: the groups per stage
        atomic_save_picture(groups_picture(bundle, image, args.short_side), groups)
        print(f"wrote {groups} (the groups of each stage)")
    return 0


def _segment_folder(args: argparse.Namespace, exported: Any = None) -> int:
    """`clipdense segment DIR --out OUTDIR`: label PNGs of every image, resumable (on torch or the export)."""
    from ..tasks.folder import run_folder
    from ..tasks.folder_tasks import OnnxSegmentFolder, SegmentFolder, SegmentSettings

    classes = parse_class_list(args.classes)
    out = folder_out(args, "overlay.png")
    if args.head and exported is None:
        expect_head(args.head, "segmenter", "--head")
    if not args.head:
        check_templates(args.templates)
    settings = SegmentSettings(classes, args.mode, args.templates, args.short_side, args.window,
                               args.background_threshold)
    job = job_of(args, args.image, out)
    if exported is not None:
        exported.check_mode(args.mode)
        return report("segment", run_folder(job, OnnxSegmentFolder(exported, settings)), out)
    bundle = load_cli_model(args)
    head = resolve_head(bundle, args.head) if args.head else None
    task = SegmentFolder(bundle, settings, head, args.head, job.batch_size)
    return report("segment", run_folder(job, task), out)


def _classify_folder(args: argparse.Namespace, exported: Any = None) -> int:
    """`clipdense classify DIR --out OUTDIR`: predictions.csv of every image, resumable (on torch or the export)."""
    from ..tasks.folder import run_folder
    from ..tasks.folder_tasks import ClassifyFolder, OnnxClassifyFolder

    if args.audio_tower:
        raise ConfigError("--audio-tower: classifies sounds; a folder run classifies images")
    if not args.adapter:
        parse_class_list(args.classes)
        check_templates(args.templates)
    out = folder_out(args, None)
    if args.adapter and exported is None:
        expect_head(args.adapter, "adapter", "--adapter")
    if exported is not None:
        task = OnnxClassifyFolder(exported, parse_class_list(args.classes), args.templates, args.top)
        return report("classify", run_folder(job_of(args, args.image, out), task), out)
    bundle = load_cli_model(args)
    adapter = load_adapter(args.adapter, bundle) if args.adapter else None
    classes = parse_class_list(args.classes) if args.classes or adapter is None else list(adapter.classes)
    job = job_of(args, args.image, out)
    task = ClassifyFolder(bundle, classes, args.templates, args.top, adapter, args.adapter, job.batch_size)
    return report("classify", run_folder(job, task), out)


def run_classify(args: argparse.Namespace) -> int:
    exported = check_runtime(args, "adapter", "audio_tower")
    if is_folder_run(args.image, args):
        return _classify_folder(args, exported)
    if exported is not None:
        from ..tasks.onnx_runtime import classify_onnx

        classes = parse_class_list(args.classes)
        check_templates(args.templates)
        return _print_ranked(args, classes, classify_onnx(exported, open_image(args.image), classes, args.templates))
    if args.out is not None:
        raise ConfigError(f"--out: only with a folder of images; {args.image} is a file (its classes are printed)")
    if not args.adapter:
        parse_class_list(args.classes)  # fail before loading anything
        check_templates(args.templates)
    if args.adapter and media_kind(args.image) != "image":
        raise ConfigError(f"--adapter: few-shot adapters classify images; {args.image} is a {media_kind(args.image)} "
                          "file")
    image = open_image(args.image) if media_kind(args.image) == "image" else args.image
    if args.audio_tower and media_kind(args.image) != "audio":
        raise ConfigError(f"--audio-tower: classifies sounds; {args.image} is a {media_kind(args.image)} file")
    if args.adapter or args.audio_tower:   # the artefact's kind, before the backbone loads
        expect_head(args.adapter or args.audio_tower, "adapter" if args.adapter else "audio",
                    "--adapter" if args.adapter else "--audio-tower")
    bundle = load_cli_model(args)
    if args.audio_tower:
        use_audio_tower(bundle, args.audio_tower)
    adapter = load_adapter(args.adapter, bundle) if args.adapter else None
    classes = parse_class_list(args.classes) if args.classes or adapter is None else list(adapter.classes)
    with inference_precision(bundle.device, args.precision):
        probs = classify(bundle, image, classes, templates=args.templates, adapter=adapter)
    return _print_ranked(args, classes, probs)


def _print_ranked(args: argparse.Namespace, classes: list[str], probs: Any) -> int:
    ranked = sorted(zip(classes, probs.tolist()), key=lambda item: -item[1])[:args.top]
    if args.json:
        print(json.dumps({name: round(p, 6) for name, p in ranked}))
    else:
        for name, p in ranked:
            print(f"{p:7.2%}  {name}")
    return 0
