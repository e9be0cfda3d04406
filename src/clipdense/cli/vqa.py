"""`clipdense vqa`: answer a question about an image with a GLIPv2 head's VQA part.

    clipdense vqa IMAGE "What colour is the star?" --head RUN [--top 5] [--json answers.json]

Bad input is one line, exit 2, before the backbone loads where it can be: an empty question, a head without a VQA
part (or of another kind), an unwritable --json; a head for other backbone weights is refused when it loads.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ..config import atomic_write_bytes
from ..errors import ConfigError
from .common import COUNT, DEVICE, check_out_file


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("vqa", help="answer a question about an image (GLIPv2 head with a VQA part)",
                              description="The backbone the head was trained on is loaded from the head file "
                                          "unless --model/--pretrained name it (another backbone is refused).")
    p.add_argument("image", help="an image file")
    p.add_argument("question", help="the question, e.g. 'What colour is the star?'")
    p.add_argument("--head", required=True, help="GLIPv2 head trained with data=vqa (.safetensors) or its run dir")
    p.add_argument("--top", type=COUNT, default=5, help="answers shown (default 5)")
    p.add_argument("--json", default=None, help="also write the question and its top answers with scores as JSON")
    p.add_argument("--model", default=None, help="backbone (default: the one the head records)")
    p.add_argument("--pretrained", default=None, help="backbone weights (default: the ones the head records)")
    p.add_argument("--device", type=DEVICE, default=None, help="cpu, cuda ... (default: cuda if available)")
    p.set_defaults(func=run_vqa)


def run_vqa(args: argparse.Namespace) -> int:
    from ..data.images import open_image
    from ..heads.expect import expect_head
    from ..tasks.vqa import NO_VQA, answer, as_answerer, check_question
    from .detect import _backbone

    question = check_question(args.question)
    if args.json:
        check_out_file(args.json, "--json", (".json",))
    if not expect_head(args.head, "vqa", "--head").config.get("answers"):
        raise ConfigError(f"--head {args.head}: {NO_VQA}")
    image = open_image(args.image)
    bundle = _backbone(args, "vqa")
    head = as_answerer(args.head, bundle, "--head")
    start = time.perf_counter()
    found = answer(bundle, image, question, head=head, top=args.top)
    ranked = ", ".join(f"{a} {s:.2f}" for a, s in zip(found.answers, found.scores))
    print(f"{args.image}: {question} -> {ranked} ({time.perf_counter() - start:.2f}s)")
    if args.json:
        atomic_write_bytes(Path(args.json), json.dumps(found.to_json(), indent=1).encode())
        print(f"wrote {len(found.answers)} answers to {args.json}")
    return 0
