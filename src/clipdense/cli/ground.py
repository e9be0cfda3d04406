"""`clipdense ground`: the boxes of each phrase of a sentence, with a GLIP head.

    clipdense ground IMAGE "a red circle left of a blue star" --head RUN --out boxes.png [--json found.json]
    clipdense ground --pseudo-label captions.csv --head TEACHER --out pseudo.json [--gold WORLD] [--min-score 0.5]

The second form is GLIP's self-training: the teacher boxes the noun phrases of a caption-only corpus and writes
modulated-COCO JSON plus pseudo.yaml, which ``clipdense train --objective glip --data pseudo.yaml`` reads (with
--gold, the gold grounding data is in it too).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ..config import atomic_save_picture, atomic_write_bytes
from ..errors import ConfigError
from .common import COUNT, DEVICE, PROBABILITY, check_out_file
from .outputs import check_beside, check_out_folder


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("ground", help="phrase grounding: boxes of a sentence's phrases (GLIP head)",
                              description="The backbone the head was trained on is loaded from the head file "
                                          "unless --model/--pretrained name it (another backbone is refused).")
    p.add_argument("image", nargs="?", help="an image file")
    p.add_argument("sentence", nargs="?", help="the sentence whose noun phrases are grounded")
    p.add_argument("--head", required=True, help="GLIP head (.safetensors) or the run dir that trained it")
    p.add_argument("--out", default=None, help="picture with each phrase's boxes in its colour (default "
                                               "boxes.png); with --pseudo-label: the JSON to write")
    p.add_argument("--json", default=None, help="also write the phrases, spans, boxes and scores as JSON")
    p.add_argument("--min-score", type=PROBABILITY, default=None,
                   help="boxes drawn and written (default 0.3; 0.5 with --pseudo-label)")
    p.add_argument("--top", type=COUNT, default=3, help="boxes kept per phrase (default 3)")
    p.add_argument("--pseudo-label", default=None, metavar="CORPUS",
                   help="self-training: box the noun phrases of this caption corpus (open_clip CSV, .tar shards, "
                        "a world's train CSV) and write modulated-COCO JSON to --out")
    p.add_argument("--gold", default=None, help="with --pseudo-label: grounding data copied into the output "
                                                "(a world written with --grounding, modulated-coco:...)")
    p.add_argument("--limit", type=COUNT, default=None, help="with --pseudo-label: at most this many images")
    p.add_argument("--batch-size", type=COUNT, default=8, help="with --pseudo-label: images per forward")
    p.add_argument("--model", default=None, help="backbone (default: the one the head records)")
    p.add_argument("--pretrained", default=None, help="backbone weights (default: the ones the head records)")
    p.add_argument("--device", type=DEVICE, default=None, help="cpu, cuda ... (default: cuda if available)")
    p.set_defaults(func=run_ground)


def run_ground(args: argparse.Namespace) -> int:
    from ..data.images import open_image
    from ..tasks.ground import as_grounder, draw_grounding, ground, keep_best, sentence_spans
    from .detect import _backbone

    if args.pseudo_label is not None:
        return run_pseudo_label(args)
    given = [flag for flag, value in (("--gold", args.gold), ("--limit", args.limit)) if value is not None]
    if given:
        raise ConfigError(f"{' / '.join(given)}: only with --pseudo-label CORPUS")
    if args.image is None or args.sentence is None:
        raise ConfigError("give an IMAGE and a SENTENCE (or --pseudo-label CORPUS)")
    args.out = args.out or "boxes.png"
    args.min_score = 0.3 if args.min_score is None else args.min_score
    if not args.sentence.strip():
        raise ConfigError("sentence: expected some words, got an empty sentence")
    sentence_spans(args.sentence)            # a sentence without a noun phrase is refused before loading
    check_out_file(args.out, "--out", (".png", ".jpg", ".jpeg"))
    if args.json:
        check_out_file(args.json, "--json", (".json",))
    image = open_image(args.image)
    bundle = _backbone(args, "grounder")
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


def run_pseudo_label(args: argparse.Namespace) -> int:
    """``--pseudo-label CORPUS``: the teacher's sure boxes of the corpus's noun phrases as modulated-COCO JSON."""
    from ..tasks.pseudo_label import parse_as, pseudo_label
    from .detect import _backbone

    if args.image is not None or args.json is not None:
        raise ConfigError("--pseudo-label labels a corpus: give no IMAGE / SENTENCE / --json (the labels go to "
                          "--out FILE.json)")
    if args.out is None:
        raise ConfigError("--pseudo-label needs --out FILE.json (where the modulated-COCO labels go)")
    out = check_out_file(args.out, "--out", (".json",))
    check_beside("--out", out, [out, out.with_suffix(".yaml")])   # the data YAML written beside it
    check_out_folder(out.with_name(f"{out.stem}-images"), "--out", "a folder for the pseudo-labelled images")
    parse_as("--pseudo-label", args.pseudo_label)    # missing data is refused before the model loads
    if args.gold:
        parse_as("--gold", args.gold)
    bundle = _backbone(args, "grounder")
    start = time.perf_counter()
    report = pseudo_label(bundle, args.head, args.pseudo_label, out,
                          0.5 if args.min_score is None else args.min_score, args.top, args.gold, args.limit,
                          args.batch_size, progress=lambda n: print(f"{n} images read", flush=True))
    for note in report.notes[:5]:
        print(f"skipped: {note}")
    print(f"{report.labelled} of {report.read} images labelled ({report.boxes} boxes; {report.no_phrase} captions "
          f"without a noun phrase, {report.unsure} without a sure box; {report.gold} gold images beside) in "
          f"{time.perf_counter() - start:.1f}s -> {report.annotations}; train a student with --data {report.data}")
    return 0
