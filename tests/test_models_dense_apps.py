"""CLIPSelf, segment(), the evaluation suite and the few-shot adapters on EVA02-style and SigLIP-style
timm towers (small random-init configs); MaPLe refuses them with one line."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import clipdense as cd
from clipdense.data.sample import Sample
from clipdense.evaluation import evaluate
from clipdense.objectives import build_objective
from clipdense.heads.adapters import MaPLe
from clipdense.tasks.adapt import AdaptConfig, fit
from clipdense.tasks.adapt import evaluate as evaluate_adapter

sys.path.insert(0, str(Path(__file__).parent))
from adapt_toy import write_toy_folder  # noqa: E402
from dense_towers import tiny_timm_clip  # noqa: E402

KINDS = ("eva02", "siglip")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools")


def _images(n: int, size: tuple[int, int] = (72, 88)) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray((rng.random((*size, 3)) * 255).astype("uint8")) for _ in range(n)]


@pytest.mark.parametrize("kind", KINDS)
def test_clipself_step_trains_the_timm_tower(kind: str) -> None:
    bundle = tiny_timm_clip(kind)
    objective = build_objective("clipself", bundle,
                                {"max_regions": 4, "global_guard": 0.5}, total_steps=2)
    transform = objective.sample_transform()
    batch = objective.collate([transform(Sample(im, f"im{i}"), torch.Generator().manual_seed(i))
                               for i, im in enumerate(_images(2))])
    assert batch["image"].shape[-1] == 128  # student at twice the teacher's 64 px
    objective.train()
    before = [p.detach().clone() for p in bundle.model.visual.parameters()]
    optimizer = torch.optim.SGD([p for p in objective.parameters() if p.requires_grad], lr=0.5)
    losses = objective(batch)
    assert math.isfinite(float(losses["loss"].detach())) and 0 < float(losses["region_loss"]) < 2
    losses["loss"].backward()
    optimizer.step()
    moved = [not torch.equal(a, b) for a, b in zip(before, bundle.model.visual.parameters())]
    assert sum(moved) > len(moved) // 2
    assert all(p.grad is None for p in objective.teacher.parameters())


@pytest.mark.parametrize("kind", KINDS)
def test_segment_on_a_timm_tower(kind: str) -> None:
    bundle = tiny_timm_clip(kind)
    image = _images(1, (50, 70))[0]
    for mode in ("maskclip", "sclip"):
        labels = cd.segment(bundle, image, ["cat", "dog", "sofa"], mode=mode)
        assert labels.shape == (50, 70) and labels.dtype == torch.int64
        assert 0 <= int(labels.min()) and int(labels.max()) < 3


@pytest.fixture
def world(tiny_world: Path) -> Path:
    """The run's shared tiny world (conftest's TINY_WORLD)."""
    return tiny_world


@pytest.mark.parametrize("kind", KINDS)
def test_evaluation_suite_on_a_timm_tower(kind: str, world: Path) -> None:
    results = evaluate(tiny_timm_clip(kind), world, tasks="all", dense_mode=("maskclip", "naclip"),
                       device="cpu", batch_size=4)
    tasks = results["tasks"]
    assert set(tasks) == {"zeroshot", "retrieval", "segmentation", "regions"}
    assert set(tasks["segmentation"]) == set(tasks["regions"]["dense"]) == {"maskclip", "naclip"}
    for mode in ("maskclip", "naclip"):
        assert 0.0 <= tasks["segmentation"][mode]["argmax"]["miou"] <= 100.0


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("toy")
    return write_toy_folder(root / "train", 3, 0), write_toy_folder(root / "val", 2, 1)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", ["linear-probe", "coop", "tip-adapter-f"])
def test_few_shot_adapters_on_a_timm_tower(kind: str, method: str, toy: tuple[Path, Path]) -> None:
    train, val = toy
    bundle = tiny_timm_clip(kind)
    result = fit(bundle, train, AdaptConfig(method=method, shots=2, steps=2, batch_size=6, val_shots=1))
    accuracy = evaluate_adapter(result.adapter, val)
    assert 0.0 <= accuracy <= 100.0


@pytest.mark.parametrize("kind", KINDS)
def test_maple_refuses_a_timm_tower_with_one_line(kind: str) -> None:
    with pytest.raises(cd.ConfigError, match="vision prompts need an open_clip VisionTransformer") as info:
        MaPLe(tiny_timm_clip(kind), ["red", "blue"])
    assert "TimmModel" in str(info.value) and "\n" not in str(info.value)
