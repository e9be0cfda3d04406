"""Inference precision: fp32, bf16 (CPU and GPU) or fp16 (GPU), as an autocast block around a task call.

    with inference_precision(bundle.device, "bf16"):
        labels = cd.segment(bundle, image, classes)

Why autocast and not cast weights: the dense modes, positional interpolation and the score arithmetic keep fp32
where autocast says they should (softmax, norms), so only the matmuls change. Text classifiers are always
computed in fp32 (``text._encode_classes`` leaves autocast), since they are cached under the weights' dtype.
The CLI's default is ``auto``: bf16 on a CPU that multiplies bf16 in hardware (AVX512-BF16 or AMX), fp32
elsewhere. Measured on this project's 2-core AVX512-BF16 CPU (docs/results/inference.md): bf16 autocast ran the
dense forward 1.2-2.8x faster than fp32 for every tower from tiny-vit-t8 to ViT-B-16 at 224-448 px, the one
exception a 7 ms call (tiny-vit-t8 at 224 px, 0.94x); without those instructions oneDNN emulates bf16, which is
slower. GPUs stay fp32 under ``auto`` (not measured here); fp16 / bf16 there are a choice. The Python API is
fp32 unless a caller opens this block.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from ..errors import ConfigError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str, device: str | torch.device) -> None:
    """A known precision that this device runs (fp16 is GPU only); one line naming the flag otherwise."""
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision {precision}: expected one of {', '.join(PRECISIONS)}")
    if precision == "fp16" and torch.device(device).type != "cuda":
        raise ConfigError(f"--precision fp16: GPU only (CPU has no fast fp16 matmuls); on {device} use bf16 or fp32")


def native_bf16_cpu() -> bool:
    """Whether this CPU has bf16 matmul instructions (AVX512-BF16 or AMX), read from Linux's /proc/cpuinfo:
    torch's own probe (``mkldnn._is_mkldnn_bf16_supported``) says yes on any AVX512 CPU, where bf16 is emulated."""
    try:
        text = open("/proc/cpuinfo", encoding="utf-8", errors="replace").read(1 << 16)
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: str | torch.device) -> str:
    """``auto`` made concrete for ``device`` (bf16 on a native-bf16 CPU, else fp32); other values unchanged."""
    check_precision(precision, device)
    if precision != "auto":
        return precision
    return "bf16" if torch.device(device).type == "cpu" and native_bf16_cpu() else "fp32"


@contextlib.contextmanager
def inference_precision(device: str | torch.device, precision: str = "fp32") -> Iterator[None]:
    """Run the block in ``precision`` on ``device`` (fp32: unchanged; auto: see ``resolve_precision``)."""
    precision = resolve_precision(precision, device)
    if precision == "fp32":
        yield
        return
    with torch.autocast(torch.device(device).type, dtype=_DTYPES[precision]):
        yield
