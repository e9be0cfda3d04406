"""`clipdense detect`: boxes of any classes in images with a detector head, or the RPN's proposals of a dataset.

    clipdense detect IMAGE --head HEAD --classes "red circle,blue star" --out boxes.png [--json out.json]
    clipdense detect --proposals --head HEAD --data WORLD --json proposals.json   # for distill --boxes
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..config import atomic_save_picture
from ..errors import ConfigError
from ..heads.expect import expect_head
from ..models import load_model
from .common import COUNT, DEVICE, PROBABILITY, add_cache_flag, check_out_file, parse_class_list
from .outputs import check_beside
from .folders import add_folder_flags, folder_out, is_folder_run, job_of, report


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("detect", help="open-vocabulary detection with a detector head (F-ViT / ViLD)",
                              description="The backbone the head was trained on is loaded from the head file "
                                          "unless --model/--pretrained name it (another backbone is refused).")
    p.add_argument("images", nargs="*", help="image files, or one folder of images (then --out OUTDIR gets "
                                             "detections.json, COCO results; a second run on OUTDIR resumes)")
    p.add_argument("--head", required=True, help="detector head (.safetensors) or the run dir that trained it")
    p.add_argument("--classes", default=None, help="comma-separated class names (default: the head's classes)")
    p.add_argument("--out", default="boxes.png",
                   help="picture with boxes (several images: IMAGE-STEM_boxes.png beside this path)")
    p.add_argument("--json", default=None, help="write detections as COCO results JSON (with --proposals: the "
                                                "proposals as a COCO instances JSON)")
    p.add_argument("--min-score", type=PROBABILITY, default=0.3, help="boxes drawn and written (default 0.3)")
    p.add_argument("--proposals", action="store_true",
                   help="export the RPN's class-agnostic proposals of --data as COCO JSON instead")
    p.add_argument("--data", default=None, help="with --proposals: a world or coco:images=DIR,annotations=FILE")
    p.add_argument("--split", default=None, help="with --proposals: the world's split (default train)")
    p.add_argument("--top", type=COUNT, default=None, help="with --proposals: proposals kept per image (default 20)")
    p.add_argument("--model", default=None, help="backbone (default: the one the head records)")
    p.add_argument("--pretrained", default=None, help="backbone weights (default: the ones the head records)")
    p.add_argument("--device", type=DEVICE, default=None, help="cpu, cuda ... (default: cuda if available)")
    add_cache_flag(p)
    add_folder_flags(p)
    p.set_defaults(func=run_detect)


def _backbone(args: argparse.Namespace, role: str = "detector"):
    """The backbone --head was trained on (or --model/--pretrained), after the head's kind is checked."""
    info = expect_head(args.head, role, "--head")
    if args.model is None:
        return load_model(info.backbone.name, info.backbone.pretrained, args.device)
    return load_model(args.model, args.pretrained, args.device)


def run_detect(args: argparse.Namespace) -> int:
    from ..data.images import open_image
    from ..tasks.detect import as_detector, detect, draw_detections, proposals_json, write_json

    if args.proposals:
        if not args.data or not args.json:
            raise ConfigError("--proposals needs --data (the images) and --json (where the proposals go)")
    else:
        given = [flag for flag, value in (("--data", args.data), ("--split", args.split), ("--top", args.top))
                 if value is not None]
        if given:
            raise ConfigError(f"{' / '.join(given)}: only with --proposals (they choose the proposals' data)")
        if not args.images:
            raise ConfigError("give one or more image files (or --proposals --data DATA)")
    folder = not args.proposals and len(args.images) == 1 and is_folder_run(args.images[0], args)
    if not folder and any(getattr(args, name) for name in ("glob", "recursive", "batch_size")):
        raise ConfigError("--glob / --recursive / --batch-size: only with one folder of images")
    classes = parse_class_list(args.classes) if args.classes else None
    if args.json:   # outputs are checked before anything is loaded or computed
        check_out_file(args.json, "--json", (".json",))
    if not folder and not args.proposals:
        out = check_out_file(args.out, "--out", (".png", ".jpg", ".jpeg"))
        check_beside("--out", out, _pictures(args.images, out))   # one picture per image, none the same file
    if folder:
        return _detect_folder(args, classes)
    bundle = _backbone(args)
    head = as_detector(args.head, bundle)
    if args.proposals:
        payload = proposals_json(head, bundle, args.data, args.split or "train", args.top or 20)
        path = write_json(payload, args.json)
        print(f"wrote {len(payload['annotations'])} proposals of {len(payload['images'])} images to {path}")
        return 0
    results = []
    for index, (name, picture) in enumerate(zip(args.images, _pictures(args.images, Path(args.out)))):
        image = open_image(name)
        start = time.perf_counter()
        found = detect(bundle, image, classes, head=head, min_score=args.min_score)
        atomic_save_picture(draw_detections(image, found), picture)
        summary = ", ".join(f"{n} {s:.2f}" for n, s in zip(found.names, found.scores.tolist())) or "nothing"
        print(f"{name}: {summary} ({time.perf_counter() - start:.2f}s) -> {picture}")
        results += [{**r, "file_name": name, "category_name": found.classes[r["category_id"] - 1]}
                    for r in found.to_coco(index + 1)]
    if args.json:
        print(f"wrote {len(results)} detections (COCO results; category_id = 1 + class index) to "
              f"{write_json(results, args.json)}")
    return 0


def _pictures(images: list[str], out: Path) -> list[Path]:
    """The picture of each image: OUT for one image, IMAGE-STEM_OUT-NAME beside OUT for several (a folder among
    several images is refused: a folder run takes it alone)."""
    for name in images:
        if Path(name).is_dir():
            raise ConfigError(f"{name}: a folder; give it alone with --out OUTDIR for a folder run")
    return [out] if len(images) == 1 else [out.with_name(f"{Path(name).stem}_{out.name}") for name in images]


def _detect_folder(args: argparse.Namespace, classes: list[str] | None) -> int:
    """`clipdense detect DIR --head HEAD --out OUTDIR`: detections.json of every image, resumable."""
    from ..tasks.detect import as_detector
    from ..tasks.folder import run_folder
    from ..tasks.folder_tasks import DetectFolder

    out = folder_out(args, "boxes.png")
    bundle = _backbone(args)
    head = as_detector(args.head, bundle)
    job = job_of(args, args.images[0], out)
    task = DetectFolder(bundle, head, str(args.head), classes, args.min_score, job.batch_size)
    return report("detect", run_folder(job, task), out)
