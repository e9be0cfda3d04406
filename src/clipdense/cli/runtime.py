"""--runtime / --onnx / --precision of `clipdense segment` and `classify`: which engine runs the model."""
from __future__ import annotations

import argparse
from typing import Any

from ..errors import ConfigError
from ..models.precision import PRECISIONS, check_precision, inference_precision

__all__ = ["add_runtime_flags", "check_runtime", "inference_precision"]


def add_runtime_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runtime", default="torch", choices=("torch", "onnx"),
                        help="torch (default), or onnx: the graphs of `clipdense export` in --onnx DIR on onnxruntime")
    parser.add_argument("--onnx", default=None, help="with --runtime onnx: the folder `clipdense export` wrote")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                        help="torch runtime: auto (default: bf16 autocast on a CPU with bf16 instructions, where it "
                             "measured faster; fp32 elsewhere), fp32, bf16 autocast, or fp16 autocast (GPU only)")


def check_runtime(args: argparse.Namespace, *torch_only: str) -> Any:
    """The ``ExportedModel`` of --runtime onnx (None for torch); flags that need the torch model are refused
    with it in one line, as is --onnx without it."""
    if args.runtime == "torch":
        if args.onnx is not None:
            raise ConfigError("--onnx: only with --runtime onnx")
        check_precision(args.precision, args.device or "cpu")
        return None
    if args.onnx is None:
        raise ConfigError("--runtime onnx needs --onnx DIR (a folder written by `clipdense export`)")
    given = [name for name in ("model", "pretrained", *torch_only) if getattr(args, name, None)]
    if args.precision not in ("fp32", "auto"):
        given.append("precision")
    if given:
        raise ConfigError(f"--runtime onnx: --{given[0].replace('_', '-')} applies to the torch runtime (the export "
                          "in --onnx names the model)")
    from ..tasks.onnx_runtime import ExportedModel

    return ExportedModel(args.onnx)
