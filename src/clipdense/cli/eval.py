"""`clipdense eval`: the registered benchmark tasks on a world or a real dataset -> Markdown + JSON."""
from __future__ import annotations

import argparse

from ..errors import ConfigError
from .common import COUNT, PIXELS, PROBABILITY, add_cache_flag, add_model_args, check_out_file, check_templates, \
    load_cli_model, warn


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `eval` to the command line."""
    parser = subparsers.add_parser("eval", help="zero-shot, retrieval, segmentation and region benchmarks")
    add_model_args(parser)
    parser.add_argument("--data", required=True,
                        help="a world folder (clipdense data synth), an open_clip CSV, tar shards, "
                             "coco:images=DIR,annotations=FILE[,stuff=FILE], "
                             "semseg:images=DIR,labels=DIR,classes=FILE[,reduce_zero_label=true,ignore_index=255], "
                             "imagefolder:root=DIR, or a data YAML with format: and those keys")
    parser.add_argument("--split", default="val",
                        help="split of a world to evaluate (default: val); other data is evaluated as given")
    parser.add_argument("--tasks", default="all",
                        help="'all' (every task the data can feed; the others are noted as not run) or a comma "
                             "list of registered tasks: zeroshot (ImageFolder), retrieval (CSV, shards), "
                             "segmentation (semseg), regions (COCO), detection (COCO, with --head) (default: all)")
    parser.add_argument("--dense-mode", default="maskclip",
                        help="dense mode(s) for segmentation and regions: one, a comma list, or 'all' "
                             "(default: maskclip)")
    parser.add_argument("--image-size", type=PIXELS, default=None,
                        help="short side (px) for dense tasks (default: the model's input size)")
    parser.add_argument("--window", type=PIXELS, default=None,
                        help="sliding-window size (px) for segmentation (default: whole image)")
    parser.add_argument("--stride", type=PIXELS, default=None, help="sliding-window stride (default: window / 2)")
    parser.add_argument("--bg-threshold", type=PROBABILITY, default=0.1,
                        help="probability under which a pixel is background in the things-only setting "
                             "(default: 0.1)")
    parser.add_argument("--region-methods", default="rois,crops,maskpool",
                        help="comma list of rois,crops,maskpool (default: all three)")
    parser.add_argument("--crops", choices=("letterbox", "stretch"), default="letterbox",
                        help="how the crops baseline fits a region to the model's input: letterbox (CLIPSelf's "
                             "published teacher view, default) or stretch (a CLIPSelf run with --no-keep-aspect)")
    parser.add_argument("--templates", default="imagenet",
                        help="prompt templates: imagenet, simple, plain, photo, or one template with {}")
    parser.add_argument("--batch-size", type=COUNT, default=32, help="images per batch (default: 32)")
    parser.add_argument("--out", default=None,
                        help="write results JSON here and a .md beside it (default: print only)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument("--head", default=None,
                        help="a trained head (file or run dir) for the tasks that evaluate one: detection, and "
                             "segmentation with a Cat-Seg / LSeg head (beside the dense modes, at the head's "
                             "training size, with seen / unseen mIoU) (--model/--pretrained: the backbone it was "
                             "trained on)")
    add_cache_flag(parser)
    parser.set_defaults(func=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    """Load the model, run the tasks, print the Markdown table, write JSON + Markdown."""
    from ..evaluation import REGION_METHODS, evaluate, plan_tasks, resolve_modes, to_markdown, write_results

    if args.out is not None:
        check_out_file(args.out, suffixes=(".json",))   # the Markdown goes beside it as .md
    if args.stride is not None and args.window is None:
        raise ConfigError(f"--stride {args.stride}: only used with --window (sliding-window segmentation)")
    methods = [m.strip() for m in args.region_methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in REGION_METHODS]
    if unknown or not methods:
        raise ConfigError(f"--region-methods {args.region_methods!r}: expected some of {', '.join(REGION_METHODS)}")
    resolve_modes(args.dense_mode)
    check_templates(args.templates)
    plan_tasks(args.data, args.tasks, args.split, args.head)   # refuse data that cannot feed the tasks before loading a model
    bundle = load_cli_model(args)
    results = evaluate(bundle, args.data, tasks=args.tasks, dense_mode=args.dense_mode,
                       image_size=args.image_size, batch_size=args.batch_size, device=args.device,
                       split=args.split, templates=args.templates, window=args.window, stride=args.stride,
                       background_threshold=args.bg_threshold, region_methods=methods,
                       show_progress=not args.no_progress, head=args.head, crops=args.crops)
    print(to_markdown(results), end="")
    if results.get("skipped_images"):
        names = results.get("skipped_examples") or []
        warn(args, f"skipped {results['skipped_images']} unreadable image(s): " + "; ".join(names[:20]) +
             (f"; ... ({len(names) - 20} more in the results JSON)" if len(names) > 20 else ""))
    if args.out is not None:
        json_path, md_path = write_results(results, args.out)
        print(f"\nwrote {json_path} and {md_path}")
    return 0
