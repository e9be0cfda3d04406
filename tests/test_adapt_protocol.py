"""The few-shot protocol (seeded sampling, base/novel split) and its one-line errors."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import clipdense as cd
from clipdense.errors import ClipDenseError, ConfigError, DataError, ModelLoadError
from clipdense.heads.adapters import ClipAdapter, load_adapter, save_adapter
from clipdense.tasks.adapt import AdaptConfig, fit
from clipdense.tasks.adapt_protocol import (base_novel_split, harmonic_mean, labels_of, open_image_folder,
                                            sample_few_shot, shots_source)

sys.path.insert(0, str(Path(__file__).parent))
from adapt_toy import write_toy_folder  # noqa: E402


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_toy_folder(tmp_path_factory.mktemp("toy") / "train", 5, 0)


def test_sampling_is_seeded_balanced_and_disjoint_from_exclusions(folder: Path) -> None:
    data = open_image_folder(folder)
    a, b, c = (sample_few_shot(data, 2, seed) for seed in (0, 0, 1))
    assert a == b and a != c
    assert sorted(labels_of(data)[i] for i in a) == [0, 0, 1, 1, 2, 2]
    rest = sample_few_shot(data, 3, 5, exclude=a)
    assert not set(rest) & set(a)
    assert [labels_of(data)[i] for i in sample_few_shot(data, 2, 0, classes=["lime", "crimson"])] == [1, 1, 0, 0]


def test_shots_source_streams_exactly_the_shots_and_resumes(folder: Path) -> None:
    data = open_image_folder(folder)
    shots = sample_few_shot(data, 2, 0)
    source = shots_source(data, shots, seed=3)
    stream = iter(source)
    first = [next(stream).key for _ in range(len(shots))]
    assert sorted(first) == sorted(data[i].key for i in shots) and source.classes == data.classes
    state = source.state_dict()
    following = [next(stream).key for _ in range(4)]
    again = shots_source(data, shots, seed=3)
    again.load_state_dict(state)
    resumed = iter(again)
    assert [next(resumed).key for _ in range(4)] == following


def test_too_many_shots_and_empty_class_are_one_line_errors(folder: Path, tmp_path: Path) -> None:
    data = open_image_folder(folder)
    with pytest.raises(DataError, match=r"class 'crimson' has 5 usable images, fewer than --shots 8"):
        sample_few_shot(data, 8, 0)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x.png").write_bytes((folder / "crimson" / "000.png").read_bytes())
    with pytest.raises(DataError, match="class folder holds no images") as info:
        open_image_folder(tmp_path)
    assert "\n" not in str(info.value) and str(tmp_path / "b") in str(info.value)


def test_base_novel_split_and_harmonic_mean() -> None:
    assert base_novel_split(["a", "b", "c", "d", "e"]) == (["a", "b", "c"], ["d", "e"])
    assert base_novel_split(["a", "b", "c"], novel=["b"]) == (["a", "c"], ["b"])
    with pytest.raises(ConfigError):
        base_novel_split(["a", "b"], novel=["z"])
    assert harmonic_mean(80.0, 40.0) == pytest.approx(53.333, abs=1e-3)
    assert harmonic_mean(0.0, 0.0) == 0.0


def test_adapter_for_another_model_is_refused(bundle: cd.models.Bundle, tmp_path: Path) -> None:
    adapter = ClipAdapter(bundle, ["crimson", "navy"])
    path = save_adapter(adapter, tmp_path / "a.safetensors")
    other_arch = cd.load_model("tiny-vit-s8", device="cpu")
    with pytest.raises(ModelLoadError, match="trained on 'tiny-vit-t8'.*given backbone 'tiny-vit-s8'.*another model"):
        load_adapter(path, other_arch)
    other_weights = cd.load_model("tiny-vit-t8", device="cpu", init_seed=123)
    with pytest.raises(ModelLoadError, match="other weights of the same model") as info:
        load_adapter(path, other_weights)
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    weights = tmp_path / "model.safetensors"
    cd.models.save_weights(bundle.model, weights, "tiny-vit-t8")
    with pytest.raises(ModelLoadError, match="a CLIP model file .*not a head"):
        load_adapter(weights, bundle)
    assert torch.equal(load_adapter(path, bundle).image_adapter[0].weight, adapter.image_adapter[0].weight)


def test_fit_rejects_bad_config(folder: Path, bundle: cd.models.Bundle) -> None:
    with pytest.raises(ClipDenseError, match="unknown method"):
        fit(bundle, folder, AdaptConfig(method="prompt-magic"))
    with pytest.raises(DataError, match="fewer than --shots 16"):
        fit(bundle, folder, AdaptConfig(method="tip-adapter", shots=16))
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) \['n_context'\]"):
        fit(bundle, folder, AdaptConfig(method="coop", shots=1, options={"n_context": 3}))


@pytest.mark.slow   # trains through the engine (> 20 steps)
def test_coop_trains_on_an_imagefolder_with_clipdense_train_and_resumes_exactly(folder: Path, tmp_path: Path) -> None:
    """The objective runs like any head: --data imagefolder:..., head checkpoints, bit-exact resume."""
    from clipdense.heads import read_head_info
    from clipdense.train.checkpoint import list_checkpoints
    from clipdense.train.config import TrainConfig
    from clipdense.train.run import run_training

    def config(out: Path, steps: int, **extra: object) -> TrainConfig:
        return TrainConfig(objective="coop", data=f"imagefolder:root={folder}", out=str(out), steps=steps,
                           batch_size=4, lr=2e-2, warmup_steps=1, checkpoint_every=2, keep_checkpoints=0,
                           num_workers=0, objective_args={"n_ctx": 2, "classes": "navy,lime"}, **extra)

    run_training(config(tmp_path / "full", 4))
    run_training(config(tmp_path / "cut", 2))
    run_training(config(tmp_path / "cut", 4, resume=str(tmp_path / "cut")))
    info = read_head_info(tmp_path / "full")
    assert info.kind == "adapter/coop" and info.classes == ["navy", "lime"] and info.config["n_ctx"] == 2
    heads = [load_adapter(tmp_path / run, cd.load_model("tiny-vit-t8", device="cpu")) for run in ("full", "cut")]
    assert [step for step, _ in list_checkpoints(tmp_path / "cut")] == [2, 4]
    assert torch.equal(heads[0].ctx, heads[1].ctx) and not torch.equal(heads[0].ctx, torch.zeros_like(heads[0].ctx))
