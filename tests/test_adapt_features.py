"""Linear probe, CLIP-Adapter, Tip-Adapter and Tip-Adapter-F on frozen features: each learns a toy task."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import clipdense as cd
from clipdense.errors import ConfigError
from clipdense.heads.adapters import LinearProbe, TipAdapter, TipAdapterConfig, ZeroShot, save_adapter
from clipdense.heads.adapters.linear_probe import fit_logistic
from clipdense.tasks.adapt import AdaptConfig, evaluate, fit

sys.path.insert(0, str(Path(__file__).parent))
from adapt_toy import COLOURS, assert_head_roundtrip, write_toy_folder  # noqa: E402


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("toy")
    return write_toy_folder(root / "train", 6, 0), write_toy_folder(root / "val", 3, 1)


def test_logistic_regression_separates_separable_points() -> None:
    features = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    labels = torch.tensor([0, 0, 1, 1])
    weight, bias = fit_logistic(features, labels, 2, weight_decay=1e-4)
    assert (features @ weight.T + bias).argmax(1).tolist() == [0, 0, 1, 1]
    strong, _ = fit_logistic(features, labels, 2, weight_decay=10.0)
    assert strong.norm() < weight.norm()            # regularisation really shrinks the weights


def test_tip_adapter_with_alpha_zero_is_zero_shot(bundle: cd.models.Bundle) -> None:
    tip = TipAdapter(bundle, ["crimson", "navy"], TipAdapterConfig(cache_size=2, alpha=0.0))
    tip.fill_cache(torch.nn.functional.normalize(torch.randn(2, 64), dim=-1), torch.tensor([0, 1]))
    features = torch.nn.functional.normalize(torch.randn(4, 64), dim=-1)
    zero_shot = ZeroShot(bundle, ["crimson", "navy"]).logits(features)
    torch.testing.assert_close(tip.logits(features).argmax(1), zero_shot.argmax(1))
    tip.alpha.fill_(1000.0)                           # cache dominates: nearest cached key wins
    assert tip.logits(tip.keys).argmax(1).tolist() == [0, 1]


def test_linear_probe_is_closed_set(bundle: cd.models.Bundle) -> None:
    probe = LinearProbe(bundle, ["crimson", "navy"])
    with pytest.raises(ConfigError, match="only score the classes"):
        probe.logits(torch.randn(1, 64), ["lime"])


@pytest.mark.slow   # trains through the engine (> 20 steps)
@pytest.mark.parametrize("method", ["linear-probe", "clip-adapter", "tip-adapter", "tip-adapter-f"])
def test_feature_method_learns_toy_task_and_reloads(method: str, toy: tuple[Path, Path],
                                                    bundle: cd.models.Bundle, tmp_path: Path) -> None:
    train, val = toy
    baseline = evaluate(ZeroShot(bundle, sorted(COLOURS)), val)
    config = AdaptConfig(method=method, shots=3, steps=15, lr=2e-2, batch_size=9, val_shots=2)
    result = fit(bundle, train, config)
    learned = evaluate(result.adapter, val)
    assert learned >= 90.0 and learned >= baseline + 40.0, (method, baseline, learned, result.info)
    assert_head_roundtrip(result.adapter, save_adapter(result.adapter, tmp_path / f"{method}.safetensors"), bundle)
