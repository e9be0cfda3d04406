"""`clipdense adapt`: fit a few-shot method on an ImageFolder and save it as a head file (kind adapter/<method>);
``--method pointclip-adapter`` fits PointCLIP's inter-view adapter on a ModelNet root instead (kind pointclip/adapter).
"""
from __future__ import annotations

import argparse
import json

from ..errors import ConfigError
from ..heads.adapters import METHODS, save_adapter
from ..tasks.adapt import AdaptConfig, base_to_novel, evaluate, fit
from .common import AMOUNT, COUNT, POSITIVE, SEED, STEPS, add_model_args, check_folder, check_out_file, \
    load_cli_model, parse_key_values


#: few-shot methods on point clouds: --data is a ModelNet root (either layout), fitted by tasks.points_fewshot
POINT_METHODS: tuple[str, ...] = ("pointclip-adapter",)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("adapt", help="few-shot adaptation (linear probe, CoOp, CoCoOp, MaPLe, "
                                            "CLIP-Adapter, Tip-Adapter) -> head .safetensors")
    p.add_argument("--method", required=True, choices=(*METHODS, *POINT_METHODS), help="few-shot method")
    p.add_argument("--data", required=True, help="ImageFolder root (root/<class>/<image>) to draw the shots from "
                                                 "(pointclip-adapter: a ModelNet root, its train split)")
    p.add_argument("--shots", type=COUNT, default=16, help="images per class (K)")
    p.add_argument("--seed", type=SEED, default=0, help="which K images are drawn, and the init")
    p.add_argument("--out", required=True,
                   help="head file to write (.safetensors; `clipdense classify --adapter` and load_head read it)")
    p.add_argument("--steps", type=STEPS, default=200, help="optimiser steps (trained methods)")
    p.add_argument("--lr", type=POSITIVE, default=2e-3, help="learning rate (trained methods)")
    p.add_argument("--batch-size", type=COUNT, default=32, help="images per step (trained methods)")
    p.add_argument("--val-shots", type=AMOUNT, default=None,
                   help="held-out images per class for Tip-Adapter alpha/beta and the probe's strength (default 4)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a field of the method's Config, e.g. n_ctx=16, class_position=middle, depth=2, ratio=0.2 "
                        "(repeatable)")
    p.add_argument("--eval-data", default=None, help="ImageFolder to report accuracy on after fitting "
                                                     "(pointclip-adapter: a ModelNet root, its test split)")
    p.add_argument("--base-to-novel", action="store_true",
                   help="fit on the first half of the classes and report base/novel/HM on --eval-data")
    add_model_args(p)
    p.set_defaults(func=run_adapt)


def run_adapt(args: argparse.Namespace) -> int:
    check_out_file(args.out, suffixes=(".safetensors",))   # a head file
    if args.method in POINT_METHODS:
        return _adapt_points(args)
    config = AdaptConfig(method=args.method, shots=args.shots, seed=args.seed, steps=args.steps, lr=args.lr,
                         batch_size=args.batch_size, val_shots=4 if args.val_shots is None else args.val_shots,
                         options=parse_key_values(args.option, "--option"))
    check_folder(args.data, "--data")
    if args.eval_data:
        check_folder(args.eval_data, "--eval-data")
    if args.base_to_novel and not args.eval_data:
        raise ConfigError("--base-to-novel needs --eval-data (the test ImageFolder)")
    bundle = load_cli_model(args)
    if args.base_to_novel:
        print(json.dumps(base_to_novel(bundle, args.data, args.eval_data, config)))
        return 0
    result = fit(bundle, args.data, config)
    path = save_adapter(result.adapter, args.out)
    if args.eval_data:
        result.info["eval_accuracy"] = evaluate(result.adapter, args.eval_data)
    print(json.dumps(result.info))
    print(f"wrote {path} (head adapter/{args.method}, {len(result.adapter.classes)} classes, "
          f"backbone {bundle.name})")
    return 0


def _adapt_points(args: argparse.Namespace) -> int:
    """PointCLIP's inter-view adapter: K shapes per class of the ModelNet root's train split, trained by the engine
    (objective pointclip-adapter; --option sets its fields: views, projection, hidden, ratio, templates)."""
    from ..data.formats.modelnet import ModelNetPoints
    from ..heads.io import save_head
    from ..tasks.points_fewshot import PointAdaptConfig, fit_point_adapter, point_accuracy

    if args.base_to_novel or args.val_shots is not None:
        raise ConfigError(f"--base-to-novel / --val-shots: not for --method {args.method} (image methods only)")
    config = PointAdaptConfig(shots=args.shots, seed=args.seed, steps=args.steps, lr=args.lr,
                              batch_size=args.batch_size, options=parse_key_values(args.option, "--option"))
    check_folder(args.data, "--data")
    train = ModelNetPoints(args.data, "train")
    test = ModelNetPoints(check_folder(args.eval_data, "--eval-data"), "test") if args.eval_data else None
    bundle = load_cli_model(args)
    adapter, info = fit_point_adapter(bundle, train, config)
    path = save_head(adapter, args.out, bundle)
    if test is not None:
        info["eval_accuracy"] = point_accuracy(adapter, test)
    print(json.dumps(info))
    print(f"wrote {path} (head pointclip/adapter, {len(adapter.classes)} classes, backbone {bundle.name})")
    return 0
