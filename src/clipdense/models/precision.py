"""Inference precision: fp32, bf16 (CPU and GPU) or fp16 (GPU), as an autocast block around a task call.

    with inference_precision(bundle.device, "bf16"):
        labels = cd.segment(bundle, image, classes)

Why autocast and not cast weights: the dense modes, positional interpolation and the score arithmetic keep fp32
where autocast says they should (softmax, norms), so only the matmuls change. Text classifiers are always
computed in fp32 (``text._encode_classes`` leaves autocast), since they are cached under the weights' dtype.
Default fp32: on the 2-core AVX512-BF16 CPU of the issue, bf16 autocast was slower than fp32 with stock kernels.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from ..errors import ConfigError

PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str, device: str | torch.device) -> None:
    """A known precision that this device runs (fp16 is GPU only); one line naming the flag otherwise."""
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision {precision}: expected one of {', '.join(PRECISIONS)}")
    if precision == "fp16" and torch.device(device).type != "cuda":
        raise ConfigError(f"--precision fp16: GPU only (CPU has no fast fp16 matmuls); on {device} use bf16 or fp32")


@contextlib.contextmanager
def inference_precision(device: str | torch.device, precision: str = "fp32") -> Iterator[None]:
    """Run the block in ``precision`` on ``device`` (fp32: unchanged)."""
    check_precision(precision, device)
    if precision == "fp32":
        yield
        return
    with torch.autocast(torch.device(device).type, dtype=_DTYPES[precision]):
        yield
