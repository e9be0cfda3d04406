"""PointCLIP's inter-view adapter: the residual mix by hand, the head file round trip, and few-shot training
through the engine (objective ``pointclip-adapter``)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from clipdense.data.formats.modelnet import ModelNetPoints
from clipdense.data.world.points3d import write_points_world
from clipdense.data.world.shapes3d import Shapes3DConfig
from clipdense.errors import ConfigError
from clipdense.heads import load_head, save_head
from clipdense.heads.pointclip import InterViewAdapter, InterViewAdapterConfig
from clipdense.objectives import build_objective, objective_options
from clipdense.tasks.points_fewshot import PointAdaptConfig, fit_point_adapter, point_accuracy, sample_point_shots

CLASSES = ["sphere", "cube", "cone"]


def test_residual_mix_by_hand(bundle) -> None:
    adapter = InterViewAdapter(bundle, CLASSES, InterViewAdapterConfig(views=6, ratio=0.25)).eval()
    features = torch.randn(2, 6, adapter.text.shape[1])
    flat = features.reshape(2, -1)
    last = adapter.view_feature[0]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.linspace(-1, 1, last.bias.numel()))
    # adapted = ReLU(0 * global + bias) = ReLU(bias), whatever the global feature
    expected = 0.25 * last.bias.clamp_min(0) + 0.75 * flat
    assert torch.allclose(adapter.mix(features), expected.reshape(2, 6, -1), atol=1e-6)
    # ratio 0 is zero-shot PointCLIP: the views' logits against the prompts, summed
    zero = InterViewAdapter(bundle, CLASSES, InterViewAdapterConfig(views=6, ratio=0.0)).eval()
    assert torch.equal(zero.mix(features), features)
    scale = bundle.model.logit_scale.exp()
    by_hand = (scale * torch.nn.functional.normalize(features, dim=-1) @ zero.text.T).sum(1)
    assert torch.allclose(zero.logits(features), by_hand, atol=1e-4)
    with pytest.raises(ConfigError, match="ratio"):
        InterViewAdapter(bundle, CLASSES, InterViewAdapterConfig(ratio=1.5))


def test_head_file_round_trip(bundle, tmp_path: Path) -> None:
    adapter = InterViewAdapter(bundle, CLASSES, InterViewAdapterConfig(views=10, hidden=16)).eval()
    with torch.no_grad():
        adapter.view_weights.copy_(torch.arange(10.0))
    path = save_head(adapter, tmp_path / "adapter.safetensors", bundle)
    loaded = load_head(path, bundle)
    features = torch.randn(3, 10, adapter.text.shape[1])
    assert isinstance(loaded, InterViewAdapter) and loaded.classes == CLASSES and loaded.config.hidden == 16
    assert torch.allclose(loaded.logits(features), adapter.logits(features))


def test_objective_options_and_needs() -> None:
    from clipdense.objectives.pointclip import PointClipAdapterObjective
    assert PointClipAdapterObjective.needs == {"points", "image_label"}
    assert objective_options("pointclip-adapter", {"ratio": 0.3, "num_points": 256}).ratio == 0.3
    with pytest.raises(ConfigError):
        objective_options("pointclip-adapter", {"rato": 0.3})


@pytest.fixture(scope="module")
def small_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("points-world")
    write_points_world(out, Shapes3DConfig(classes=CLASSES, train_per_class=4, test_per_class=2, points=256))
    return out / "modelnet40_normal_resampled"


def test_transform_draws_points_per_sample(bundle, small_world: Path) -> None:
    from clipdense.data.readers import DataInfo
    reader = ModelNetPoints(small_world, "train")
    objective = build_objective("pointclip-adapter", bundle, {"num_points": 100, "views": 6},
                                DataInfo(classes=tuple(reader.classes)))
    transform = objective.sample_transform()
    one = transform(reader[0], torch.Generator().manual_seed(1))
    again = transform(reader[0], torch.Generator().manual_seed(1))
    assert one["points"].shape == (100, 3) and torch.equal(one["points"], again["points"])
    assert reader[0].key == "sphere_0001" and int(one["label"]) == 2   # labels: sorted classes cone, cube, sphere
    assert sample_point_shots(reader, 2, 0) == sample_point_shots(reader, 2, 0) and \
        len(sample_point_shots(reader, 2, 0)) == 6


@pytest.mark.slow
def test_adapter_overfits_its_shots_on_the_engine(bundle, small_world: Path, tmp_path: Path) -> None:
    train = ModelNetPoints(small_world, "train", num_points=256)
    adapter, info = fit_point_adapter(bundle, train, PointAdaptConfig(
        shots=4, steps=30, lr=3e-3, batch_size=12, options={"views": 6, "num_points": 256, "ratio": 0.8}),
        run_dir=tmp_path / "run")
    assert (tmp_path / "run" / "config.yaml").is_file() and info["train_shapes"] == 12
    assert point_accuracy(adapter, train) == 100.0


def test_cli_adapt_pointclip_refuses_image_flags(small_world: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    from clipdense.cli.main import main
    common = ["adapt", "--method", "pointclip-adapter", "--model", "tiny-vit-t8", "--device", "cpu",
              "--out", str(tmp_path / "a.safetensors")]
    assert main(common + ["--data", str(small_world), "--val-shots", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not for --method pointclip-adapter" in err[0]
    assert main(common + ["--data", str(tmp_path / "nowhere")]) == 2
    assert "--data" in capsys.readouterr().err and not (tmp_path / "a.safetensors").exists()


def test_cli_adapt_pointclip_writes_a_head(small_world: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import json

    import clipdense as cd
    from clipdense.cli.main import main
    out = tmp_path / "points.safetensors"
    assert main(["adapt", "--method", "pointclip-adapter", "--model", "tiny-vit-t8", "--device", "cpu",
                 "--data", str(small_world), "--eval-data", str(small_world), "--shots", "2", "--steps", "4",
                 "--batch-size", "6", "--option", "views=6", "--option", "num_points=128", "--out", str(out)]) == 0
    info = json.loads(capsys.readouterr().out.splitlines()[-2])
    assert info["train_shapes"] == 6 and info["shots"] == 2
    head = load_head(out, cd.load_model("tiny-vit-t8", device="cpu"))     # the same (seeded) tiny weights
    assert isinstance(head, InterViewAdapter) and head.config.views == 6 and head.classes == sorted(CLASSES)
    assert point_accuracy(head, ModelNetPoints(small_world, "test")) == pytest.approx(info["eval_accuracy"])
