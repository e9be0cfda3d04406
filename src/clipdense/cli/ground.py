"""`clipdense ground`: the boxes of each phrase of a sentence, with a GLIP head.

    clipdense ground IMAGE "a red circle left of a blue star" --head RUN --out boxes.png [--json found.json]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ..config import atomic_save_picture, atomic_write_bytes
from ..errors import ConfigError
from .common import COUNT, DEVICE, PROBABILITY, check_out_file


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("ground", help="phrase grounding: boxes of a sentence's phrases (GLIP head)",
                              description="The backbone the head was trained on is loaded from the head file "
                                          "unless --model/--pretrained name it (another backbone is refused).")
    p.add_argument("image", help="an image file")
    p.add_argument("sentence", help="the sentence whose noun phrases are grounded")
    p.add_argument("--head", required=True, help="GLIP head (.safetensors) or the run dir that trained it")
    p.add_argument("--out", default="boxes.png", help="picture with each phrase's boxes in its colour")
    p.add_argument("--json", default=None, help="also write the phrases, spans, boxes and scores as JSON")
    p.add_argument("--min-score", type=PROBABILITY, default=0.3, help="boxes drawn and written (default 0.3)")
    p.add_argument("--top", type=COUNT, default=3, help="boxes kept per phrase (default 3)")
    p.add_argument("--model", default=None, help="backbone (default: the one the head records)")
    p.add_argument("--pretrained", default=None, help="backbone weights (default: the ones the head records)")
    p.add_argument("--device", type=DEVICE, default=None, help="cpu, cuda ... (default: cuda if available)")
    p.set_defaults(func=run_ground)


def run_ground(args: argparse.Namespace) -> int:
    from ..data.images import open_image
    from ..tasks.ground import as_grounder, draw_grounding, ground, keep_best, sentence_spans
    from .detect import _backbone

    if not args.sentence.strip():
        raise ConfigError("sentence: expected some words, got an empty sentence")
    sentence_spans(args.sentence)            # a sentence without a noun phrase is refused before loading
    check_out_file(args.out, "--out", (".png", ".jpg", ".jpeg"))
    if args.json:
        check_out_file(args.json, "--json", (".json",))
    image = open_image(args.image)
    bundle = _backbone(args)
    head = as_grounder(args.head, bundle)
    start = time.perf_counter()
    found = keep_best(ground(bundle, image, args.sentence, head=head), args.min_score, args.top)
    atomic_save_picture(draw_grounding(image, found), args.out)
    summary = "; ".join(f"{p.text}: " + (", ".join(f"{s:.2f}" for s in p.scores.tolist()) or "nothing")
                        for p in found.phrases)
    print(f"{args.image}: {summary} ({time.perf_counter() - start:.2f}s) -> {args.out}")
    if args.json:
        atomic_write_bytes(Path(args.json), json.dumps(found.to_json(), indent=1).encode())
        print(f"wrote {sum(len(p.scores) for p in found.phrases)} boxes of {len(found.phrases)} phrases to "
              f"{args.json}")
    return 0
