"""Inference speed the way users run it (issue 35): images/s of training-free dense segmentation with sliding
windows, ours beside a re-implementation of the official repositories' path, image side and text side apart.

The official path (SCLIP / NACLIP run mmseg's ``slide_inference``): one image-tower forward per window, the text
classifier recomputed for every image from all its prompts, each window's cosines upsampled to the window and
averaged where windows overlap (``official_slide_cosines`` below). Ours on the same weights: the text classifier
read from the on-disk cache; the windows of an image stacked into one forward (``tasks.vocabulary.dense_windows``)
in fp32, under bf16 autocast, and through the exported ONNX graph on onnxruntime; and whole-image inference (one
forward, no windows) as the faster option. ``check_parity`` asserts ours equals the official path to 1e-4 before
anything is timed. A Cat-Seg head (random init: the cost is the same) is timed with the same windows.

    python bench/inference.py --out runs/bench/inference.json            # ViT-B-16 (random init) at 448 px
    python bench/inference.py --smoke --out /tmp/inference_smoke.json     # tiny model, 64 px, seconds

Numbers are meaningful only on an idle machine: the table in docs/results/inference.md waits for one.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (bench/ is a folder of scripts, not a package)

from clipdense.models import load_model  # noqa: E402
from clipdense.models.dense import DENSE_MODES, encode_dense  # noqa: E402
from clipdense.models.precision import inference_precision  # noqa: E402
from clipdense.models.text import resolve_templates, text_classifier  # noqa: E402
from clipdense.tasks.segment import sliding_window  # noqa: E402
from clipdense.tasks.vocabulary import _block_cosines, dense_windows  # noqa: E402

#: ADE-150-sized vocabulary of made-up names (the text side's cost grows with it)
CLASSES = [f"object kind {i}" for i in range(150)]


def official_text_classifier(model: torch.nn.Module, tokenizer: Any, classes: Sequence[str],
                             templates: str) -> torch.Tensor:
    """(C, D): every prompt of every class through the text tower, as the official wrappers do per image."""
    fill = resolve_templates(templates)
    rows = []
    for name in classes:
        embedding = F.normalize(model.encode_text(tokenizer([t(name) for t in fill])).float(), dim=-1)
        rows.append(F.normalize(embedding.mean(0), dim=-1))
    return torch.stack(rows)


def official_slide_cosines(model: torch.nn.Module, image: torch.Tensor, classifier: torch.Tensor, mode: str,
                           crop: int, stride: int) -> torch.Tensor:
    """(1, C, H, W) as mmseg's ``slide_inference``: grids of ``crop`` every ``stride`` (the last one flush with the
    border), one forward each, logits resized to the crop, summed, divided by the count matrix."""
    _, _, height, width = image.shape
    rows = max(height - crop + stride - 1, 0) // stride + 1
    cols = max(width - crop + stride - 1, 0) // stride + 1
    preds = image.new_zeros((1, classifier.shape[0], height, width))
    count = image.new_zeros((1, 1, height, width))
    for row in range(rows):
        for col in range(cols):
            y2, x2 = min(row * stride + crop, height), min(col * stride + crop, width)
            y1, x1 = max(y2 - crop, 0), max(x2 - crop, 0)
            dense = encode_dense(model, image[:, :, y1:y2, x1:x2], mode).float()
            logits = torch.einsum("bdhw,cd->bchw", dense, classifier)
            preds[:, :, y1:y2, x1:x2] += F.interpolate(logits, size=(y2 - y1, x2 - x1), mode="bilinear",
                                                       align_corners=False)
            count[:, :, y1:y2, x1:x2] += 1
    return preds / count


def our_cosines(model: torch.nn.Module, image: torch.Tensor, classifier: torch.Tensor, mode: str, crop: int | None,
                stride: int | None) -> torch.Tensor:
    """(1, C, H, W): the library's path (windows batched through the tower)."""
    windows = dense_windows(model, image, mode, crop, stride)
    return _block_cosines(windows, 0, classifier, crop, tuple(image.shape[-2:]))


@torch.no_grad()
def check_parity(bundle: Any, image: torch.Tensor, mode: str, crop: int, stride: int, templates: str,
                 classes: Sequence[str]) -> float:
    """Max abs difference of our cosines and the official path's (asserted <= 1e-4), labels equal."""
    ours = our_cosines(bundle.model, image, text_classifier(bundle, classes, templates), mode, crop, stride)
    official = official_slide_cosines(bundle.model, image, official_text_classifier(
        bundle.model, bundle.tokenizer, classes, templates), mode, crop, stride)
    diff = float((ours - official).abs().max())
    if diff > 1e-4 or not torch.equal(ours.argmax(1), official.argmax(1)):
        raise AssertionError(f"{mode}: ours differs from the official path by {diff:.2e}")
    return diff


def seconds_per_call(fn: Callable[[], Any], warmup: int, repeats: int) -> float:
    """Median wall seconds of ``repeats`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def onnx_cosines(session: Any, image: torch.Tensor, classifier: torch.Tensor, crop: int, stride: int,
                 window_batch: int = 8) -> torch.Tensor:
    """Our windows through the exported graph (crops stacked, as ``dense_windows``), scored as ours."""
    from clipdense.tasks.segment import _window_starts

    height, width = image.shape[-2:]
    boxes = [(t, left) for t in _window_starts(height, crop, stride) for left in _window_starts(width, crop, stride)]
    maps: list[torch.Tensor] = []
    for start in range(0, len(boxes), window_batch):
        crops = torch.cat([image[:, :, t:t + crop, left:left + crop] for t, left in boxes[start:start + window_batch]])
        maps += list(torch.from_numpy(session.run(None, {"images": crops.numpy()})[0]).split(1))
    return _block_cosines([(t, left, m) for (t, left), m in zip(boxes, maps)], 0, classifier, crop, (height, width))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny model at 64 px, 1 repeat: checks the script runs")
    parser.add_argument("--out", default=None, help="JSON file for the results")
    parser.add_argument("--model", default="ViT-B-16", help="architecture (random init; the cost is the same)")
    parser.add_argument("--side", type=int, default=448, help="image side in pixels (default 448)")
    parser.add_argument("--window", type=int, default=224, help="sliding-window side (stride half of it)")
    parser.add_argument("--modes", default=",".join(sorted(DENSE_MODES)), help="dense modes to time")
    parser.add_argument("--templates", default="imagenet", help="prompt set of the text side (imagenet: 80 prompts)")
    parser.add_argument("--text-classes", type=int, default=20,
                        help="classes of the text side (its cost is linear in them: 150 x 80 prompts take ~20 min here)")
    parser.add_argument("--catseg-classes", type=int, default=20,
                        help="classes of the Cat-Seg row (its cost aggregation is linear in them)")
    parser.add_argument("--no-text", action="store_true", help="skip the text side (minutes)")
    parser.add_argument("--no-image", action="store_true", help="skip the dense-mode rows of the image side")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per row (median)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--no-onnx", action="store_true", help="skip the onnxruntime rows (the export takes minutes)")
    parser.add_argument("--no-catseg", action="store_true", help="skip the Cat-Seg head row")
    parser.add_argument("--compile", action="store_true",
                        help="add a row with the image tower under torch.compile (inductor; minutes to compile)")
    return parser.parse_args()


def settings(args: argparse.Namespace) -> dict[str, Any]:
    if args.smoke:
        return {"model": "tiny-vit-t8", "side": 64, "window": 32, "modes": ["maskclip", "naclip"],
                "templates": "plain", "classes": CLASSES[:10], "repeats": 1, "warmup": 0,
                "text_classes": 10, "catseg_classes": 10}
    return {"model": args.model, "side": args.side, "window": args.window,
            "modes": [m.strip() for m in args.modes.split(",") if m.strip()], "templates": args.templates,
            "classes": CLASSES, "repeats": args.repeats, "warmup": 1, "text_classes": args.text_classes,
            "catseg_classes": args.catseg_classes}


@torch.no_grad()
def image_rows(bundle: Any, s: dict[str, Any], onnx_folder: Path | None, compile_tower: bool = False
               ) -> list[dict[str, Any]]:
    """Seconds per image of the image side, per mode and path (the classifier fixed, as after the text side)."""
    torch.manual_seed(0)
    image = torch.randn(1, 3, s["side"], s["side"])
    classifier = text_classifier(bundle, s["classes"], "plain")   # the image side's cost depends on C only
    crop, stride, model = s["window"], s["window"] // 2, bundle.model
    rows = []
    for mode in s["modes"]:
        parity = check_parity(bundle, image, mode, crop, stride, "plain", s["classes"][:5])
        paths: dict[str, Callable[[], Any]] = {
            "official (one forward per window)": lambda: official_slide_cosines(model, image, classifier, mode, crop,
                                                                                stride),
            "ours fp32 (windows batched)": lambda: our_cosines(model, image, classifier, mode, crop, stride),
            "ours bf16 autocast": lambda: _bf16(lambda: our_cosines(model, image, classifier, mode, crop, stride)),
            "ours whole image (no windows)": lambda: our_cosines(model, image, classifier, mode, None, None),
        }
        if compile_tower:
            paths["ours fp32 + torch.compile"] = compiled_path(model, image, classifier, mode, crop, stride)
        if onnx_folder is not None:
            from clipdense.tasks.onnx_runtime import ExportedModel

            session = ExportedModel(onnx_folder).session(f"image-{mode}.onnx")
            paths["onnxruntime (windows batched)"] = lambda: onnx_cosines(session, image, classifier, crop, stride)
        official = None
        for name, fn in paths.items():
            seconds = seconds_per_call(fn, s["warmup"], s["repeats"])
            official = official or seconds
            rows.append({"side": "image", "mode": mode, "path": name, "seconds_per_image": round(seconds, 4),
                         "images_per_s": round(1 / seconds, 3), "vs_official": round(official / seconds, 2),
                         "parity_max_abs_diff": parity})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def compiled_path(model: torch.nn.Module, image: torch.Tensor, classifier: torch.Tensor, mode: str, crop: int,
                  stride: int) -> Callable[[], Any]:
    """Our windowed path with the tower's dense forward compiled by inductor (the library's ``encode_dense`` is
    swapped for the compiled one while the row runs; compiled on the first, untimed call)."""
    from clipdense.tasks import vocabulary

    compiled = torch.compile(lambda crops: encode_dense(model, crops, mode))

    def run() -> Any:
        original = vocabulary.encode_dense
        vocabulary.encode_dense = lambda m, crops, md: compiled(crops)
        try:
            return our_cosines(model, image, classifier, mode, crop, stride)
        finally:
            vocabulary.encode_dense = original
    return run


def _bf16(fn: Callable[[], Any]) -> Any:
    with inference_precision("cpu", "bf16"):
        return fn()


@torch.no_grad()
def text_rows(bundle: Any, s: dict[str, Any]) -> list[dict[str, Any]]:
    """Seconds per image of the text side: the official path recomputes the classifier, ours reads the cache."""
    classes = s["classes"][:s["text_classes"]]
    text_classifier(bundle, classes, s["templates"])   # fills the cache once (what any earlier call did)
    paths = {"official (recomputed per image)": lambda: official_text_classifier(
                 bundle.model, bundle.tokenizer, classes, s["templates"]),
             "ours (on-disk cache)": lambda: text_classifier(bundle, classes, s["templates"])}
    rows, official = [], None
    for name, fn in paths.items():
        # the official path takes minutes per call (12 000 prompts at full size): one timed call, no warm-up
        seconds = seconds_per_call(fn, 0, 1) if official is None else seconds_per_call(fn, s["warmup"], s["repeats"])
        official = official or seconds
        rows.append({"side": "text", "classes": len(classes), "templates": s["templates"], "path": name,
                     "seconds_per_image": round(seconds, 4), "vs_official": round(official / seconds, 2)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


@torch.no_grad()
def catseg_row(bundle: Any, s: dict[str, Any]) -> dict[str, Any]:
    """A Cat-Seg head (random init) with the same sliding windows: seconds per image."""
    from clipdense.heads.segmentation import CatSegConfig, CatSegHead

    config = CatSegConfig(image_size=s["window"]) if not s.get("tiny_head") else CatSegConfig(
        image_size=s["window"], hidden_dim=16, guidance_dim=16, heads=2, window=2, layers=1,
        decoder_dims=[8, 8], decoder_guidance_dims=[8, 8])
    names = list(s["classes"][:s["catseg_classes"]])
    head = CatSegHead(bundle.model, bundle.tokenizer, config, names).eval()
    image = torch.randn(1, 3, s["side"], s["side"])
    head.text_features(names)   # memoised, as a second image would find it
    seconds = seconds_per_call(lambda: sliding_window(lambda crop: head.segment_logits(crop, names), image,
                                                      len(names), s["window"]), s["warmup"], s["repeats"])
    row = {"side": "image", "mode": f"catseg head, {len(names)} classes", "path": "ours fp32 (one head call per window)",
           "seconds_per_image": round(seconds, 4), "images_per_s": round(1 / seconds, 3)}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    s = settings(args)
    s["tiny_head"] = args.smoke
    env = common.environment(torch.device("cpu"))
    env.update(threads=torch.get_num_threads(), settings={k: v for k, v in s.items() if k != "classes"},
               classes=len(s["classes"]))
    with tempfile.TemporaryDirectory() as scratch:
        import os

        os.environ["XDG_CACHE_HOME"] = scratch   # a fresh text cache: the bench fills it itself
        bundle = load_model(s["model"], pretrained="synthworld" if args.smoke else None, device="cpu")
        onnx_folder = None
        if not args.no_onnx:
            from clipdense.tasks.export import export_onnx

            onnx_folder = Path(scratch) / "onnx"
            export_onnx(bundle, onnx_folder, s["modes"], text=False)
        rows = [] if args.no_text else text_rows(bundle, s)
        rows += [] if args.no_image else image_rows(bundle, s, onnx_folder, args.compile)
        if not args.no_catseg:
            rows.append(catseg_row(bundle, s))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"environment": env, "rows": rows}, indent=1))
    print(table(rows))


def table(rows: list[dict[str, Any]]) -> str:
    """The Markdown table of docs/results/inference.md."""
    lines = ["| side | mode | path | s / image | images/s | × official |", "|---|---|---|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['side']} | {row.get('mode', row.get('templates', ''))} | {row['path']} | "
                     f"{row['seconds_per_image']:.4f} | {row.get('images_per_s', 1 / row['seconds_per_image']):.2f} | "
                     f"{row.get('vs_official', '')} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
