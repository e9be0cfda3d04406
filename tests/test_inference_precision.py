"""Inference precision: bf16 autocast keeps the dense map within cosine 0.99 of fp32 in every mode, text classifiers
stay fp32 (they are cached under the weights' dtype), fp16 is refused on CPU in one line."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import clipdense as cd
from clipdense.errors import ConfigError
from clipdense.models import precision as precision_module
from clipdense.models.precision import check_precision, inference_precision, resolve_precision


@pytest.fixture(scope="module")
def shipped():
    return cd.load_model("tiny-vit-t8", pretrained="synthworld", device="cpu")


@pytest.mark.parametrize("mode", sorted(cd.DENSE_MODES))
def test_bf16_dense_map_cosine_to_fp32_at_least_099(shipped, mode):
    torch.manual_seed(0)
    images = torch.randn(2, 3, 96, 128)
    with torch.no_grad():
        full = cd.encode_dense(shipped.model, images, mode)
        with inference_precision("cpu", "bf16"):
            half = cd.encode_dense(shipped.model, images, mode)
    assert half.dtype == torch.bfloat16   # autocast did act
    cosine = F.cosine_similarity(full, half.float(), dim=1)   # per pixel
    assert cosine.min() >= 0.99, float(cosine.min())


def test_bf16_text_classifier_is_the_fp32_one(shipped):
    names = ["red circle", "blue square"]
    reference = cd.text_classifier(shipped, names, "world", cache=False)
    with inference_precision("cpu", "bf16"):
        inside = cd.text_classifier(shipped, names, "world", cache=False)
    assert inside.dtype == torch.float32 and torch.equal(inside, reference)


def test_precision_checks():
    check_precision("bf16", "cpu")
    check_precision("fp16", "cuda:0")
    with pytest.raises(ConfigError, match="--precision fp16: GPU only"):
        check_precision("fp16", "cpu")
    with pytest.raises(ConfigError, match="--precision fp8: expected one of auto, fp32, bf16, fp16"):
        with inference_precision("cpu", "fp8"):
            pass


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_is_bf16_only_on_a_cpu_with_bf16_instructions(monkeypatch, native, expected):
    monkeypatch.setattr(precision_module, "native_bf16_cpu", lambda: native)
    assert resolve_precision("auto", "cpu") == expected
    assert resolve_precision("auto", "cuda:0") == "fp32"   # GPUs: not measured here, so unchanged
    assert resolve_precision("fp32", "cpu") == "fp32" and resolve_precision("bf16", "cpu") == "bf16"
    with inference_precision("cpu", "auto"):
        assert torch.is_autocast_enabled("cpu") == (expected == "bf16")


def test_native_bf16_reads_the_cpu_flags(monkeypatch, tmp_path):
    """AVX512 alone is not enough (oneDNN emulates bf16 there, slower): the avx512_bf16 or amx_bf16 flag is."""
    import builtins

    real_open = builtins.open
    for flags, expected in (("fpu avx512f avx512bw", False), ("fpu avx512f avx512_bf16", True),
                            ("fpu amx_bf16 amx_tile", True)):
        info = tmp_path / "cpuinfo"
        info.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
        monkeypatch.setattr(builtins, "open", lambda path, *a, **k: real_open(info if path == "/proc/cpuinfo"
                                                                                else path, *a, **k))
        assert precision_module.native_bf16_cpu() is expected, flags
        monkeypatch.setattr(builtins, "open", real_open)
