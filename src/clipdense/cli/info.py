"""`clipdense info`: models, dense modes, objectives, devices."""
from __future__ import annotations

import argparse
import importlib
import platform

import torch

from ..data.sample import describe_fields
from ..heads import known_head_kinds
from ..models import DENSE_MODES, available_models
from ..objectives import OBJECTIVES, objective_class
from ..models.registry import shipped_weights


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("info", help="models, dense modes, objectives, devices")
    parser.add_argument("--all-models", action="store_true", help="list every open_clip architecture too")
    parser.set_defaults(func=run)


def _objective_lines() -> list[str]:
    """One line per registered objective: name, the Sample fields it needs, its summary."""
    lines = []
    for name in sorted(OBJECTIVES):
        cls = objective_class(name)
        summary = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        needs = describe_fields(cls.needs) if cls.needs else "images (+ options)"
        lines.append(f"  {name:10s} needs {needs}: {summary}")
    return lines


def run(args: argparse.Namespace) -> int:
    models = available_models()
    shipped = shipped_weights()
    print("built-in models (random init unless a shipped tag is given):")
    for name in models["builtin"]:
        tags = [tag for (model, tag) in shipped if model == name]
        print(f"  {name}" + (f"  pretrained: {', '.join(tags)}" if tags else ""))
    listed = models["open_clip"] if args.all_models else models["open_clip"][:8] + ["..."]
    print(f"open_clip architectures ({len(models['open_clip'])}; tags via open_clip.list_pretrained()):")
    print("  " + ", ".join(listed))
    print("dense modes:")
    for name, mode in DENSE_MODES.items():
        print(f"  {name:10s} {mode.description}")
    print("objectives (clipdense train --objective NAME):")
    print("\n".join(_objective_lines()))
    print(f"head kinds (cd.load_head): {', '.join(known_head_kinds())}")
    devices = ["cpu"] + [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]
    print(f"devices: {', '.join(devices)}")
    print(f"versions: python {platform.python_version()}, torch {torch.__version__}, "
          f"open_clip {importlib.import_module('open_clip').__version__}")
    return 0
