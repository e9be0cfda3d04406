"""CoOp, CoCoOp and MaPLe: prompt hooks are exact and removable, and each method learns a toy task."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import clipdense as cd
from clipdense.errors import ConfigError
from clipdense.heads.adapters import CoOp, CoOpConfig, MaPLe, MaPLeConfig, ZeroShot, save_adapter
from clipdense.heads.adapters.prompts import build_prompt_tokens
from clipdense.tasks.adapt import AdaptConfig, evaluate, fit

sys.path.insert(0, str(Path(__file__).parent))
from adapt_toy import COLOURS, assert_head_roundtrip, write_toy_folder  # noqa: E402


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("toy")
    return write_toy_folder(root / "train", 4, 0), write_toy_folder(root / "val", 3, 1)


def test_prompt_tokens_place_context_where_asked(bundle: cd.models.Bundle) -> None:
    for position, front in (("end", 4), ("middle", 2), ("front", 0)):
        p = build_prompt_tokens(bundle.tokenizer, ["red circle", "house"], 4, position)
        assert p.ctx_mask.sum(1).tolist() == [4, 4]
        first_ctx = int(p.ctx_mask[0].nonzero()[0])
        assert first_ctx == (1 if front else 3)               # after SOT, or after the 2 name tokens
        assert int(p.tokens[0].argmax()) == int(p.tokens[0].nonzero()[-1])   # EOT stays the pooled token
    with pytest.raises(ConfigError, match="position"):
        build_prompt_tokens(bundle.tokenizer, ["x"], 4, "side")


def test_coop_context_equal_to_word_embeddings_reproduces_plain_text(bundle: cd.models.Bundle) -> None:
    """The hook must feed exactly the given embeddings: init from 'a photo of a' == tokenising the prompt."""
    coop = CoOp(bundle, ["house", "red circle"], CoOpConfig(ctx_init="a photo of a"))
    with torch.no_grad():
        ours = coop.text_features(["house", "red circle"])
        plain = bundle.model.encode_text(bundle.tokenizer(["a photo of a house.", "a photo of a red circle."]))
    torch.testing.assert_close(ours, torch.nn.functional.normalize(plain, dim=-1), atol=1e-5, rtol=1e-5)


def test_maple_hooks_change_both_towers_and_leave_nothing_behind(bundle: cd.models.Bundle) -> None:
    maple = MaPLe(bundle, ["house", "snowman"], MaPLeConfig(depth=2))
    pixels = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = bundle.model.encode_image(pixels)
        prompted = maple.encode_images(pixels)
        after = bundle.model.encode_image(pixels)
    torch.testing.assert_close(before, after)
    assert not torch.allclose(torch.nn.functional.normalize(before, dim=-1), prompted, atol=1e-4)
    deep = maple.deep_text.detach().clone()
    with torch.no_grad():
        t1 = maple.text_features(["house"])
        maple.deep_text.add_(torch.randn_like(deep))  # not a constant: LayerNorm would cancel it
        t2 = maple.text_features(["house"])
        maple.deep_text.copy_(deep)
    assert not torch.allclose(t1, t2), "deep text prompts have no effect"
    with pytest.raises(ConfigError, match="depth"):
        MaPLe(bundle, ["house"], MaPLeConfig(depth=5))


@pytest.mark.slow   # trains through the engine (> 20 steps)
@pytest.mark.parametrize("method", ["coop", "cocoop", "maple"])
def test_prompt_method_learns_toy_task_and_reloads(method: str, toy: tuple[Path, Path],
                                                   bundle: cd.models.Bundle, tmp_path: Path) -> None:
    train, val = toy
    baseline = evaluate(ZeroShot(bundle, sorted(COLOURS)), val)
    result = fit(bundle, train, AdaptConfig(method=method, shots=3, steps=12, lr=2e-2, batch_size=9, val_shots=0))
    learned = evaluate(result.adapter, val)
    assert learned >= 90.0 and learned >= baseline + 40.0, (method, baseline, learned)
    assert_head_roundtrip(result.adapter, save_adapter(result.adapter, tmp_path / f"{method}.safetensors"), bundle)
