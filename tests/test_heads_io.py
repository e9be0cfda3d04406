"""The head file: any registered kind round-trips, other backbones and non-head files are refused in one line,
and the engine writes a head-training run's export as a head (resume stays exact)."""
from __future__ import annotations

import copy
import json
import shutil
import sys
from pathlib import Path
from typing import Any, Mapping

import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save
from torch import nn

import clipdense as cd
from clipdense.errors import ConfigError, ModelLoadError
from clipdense.heads import HEAD_FILE, HeadKind, read_head_info, register_head_kind
from clipdense.heads.io import metadata_digest
from clipdense.models.weights import model_fingerprint
from clipdense.data.readers import DataInfo
from clipdense.data.sample import Sample
from clipdense.data.streams import InMemorySamples
from clipdense.heads.adapters import ClipAdapter
from clipdense.objectives import build_objective
from clipdense.train.checkpoint import latest_checkpoint, list_checkpoints
from clipdense.train.config import TrainConfig
from clipdense.train.data import BatchStream
from clipdense.train.engine import Trainer

sys.path.insert(0, str(Path(__file__).parent))
from adapt_toy import assert_head_roundtrip, other_weights  # noqa: E402


class ToyHead(nn.Module):
    """A kind that is not an adapter: a linear classifier over the backbone's embedding."""

    def __init__(self, dim: int, classes: list[str], hidden: int) -> None:
        super().__init__()
        self.classes, self.hidden = classes, hidden
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, len(classes)))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)


def build_toy(config: Mapping[str, Any], bundle: Any, classes: list[str] | None) -> ToyHead:
    return ToyHead(int(bundle.model.text_projection.shape[1]), list(classes or []), **config)


register_head_kind(HeadKind("test/toy", ToyHead, build_toy, config_of=lambda m: {"hidden": m.hidden},
                            classes_of=lambda m: list(m.classes)))


def one_line(info: pytest.ExceptionInfo, path: Path) -> str:
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def rewrite_metadata(path: Path, target: Path, **changes: str) -> Path:
    """Copy a safetensors file with some metadata values replaced (a hand-edited header)."""
    with safe_open(str(path), framework="pt") as handle:
        metadata = {**handle.metadata(), **changes}
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    target.write_bytes(save(tensors, metadata=metadata))
    return target


@pytest.fixture()
def toy_file(bundle: cd.models.Bundle, tmp_path: Path) -> tuple[ToyHead, Path]:
    torch.manual_seed(0)
    head = ToyHead(64, ["cat", "dog", "sofa"], hidden=8)
    return head, cd.save_head(head, tmp_path / "toy.safetensors", bundle)


def test_any_registered_kind_round_trips_and_describes_itself(toy_file: tuple[ToyHead, Path],
                                                              bundle: cd.models.Bundle) -> None:
    head, path = toy_file
    info = read_head_info(path)
    assert (info.kind, info.config, info.classes) == ("test/toy", {"hidden": 8}, ["cat", "dog", "sofa"])
    assert (info.backbone.name, info.backbone.fingerprint) == ("tiny-vit-t8", model_fingerprint(bundle.model))
    again = cd.load_head(path, bundle)
    features = torch.randn(5, 64)
    assert type(again) is ToyHead and not again.training
    assert torch.equal(head(features), again(features))


def test_head_on_other_weights_or_another_model_is_refused(toy_file: tuple[ToyHead, Path]) -> None:
    _, path = toy_file
    with pytest.raises(ModelLoadError) as info:
        cd.load_head(path, other_weights())
    message = one_line(info, path)
    assert "trained on 'tiny-vit-t8' (no pretrained weights)" in message and "other weights of the same model" in message
    with pytest.raises(ModelLoadError, match="given backbone 'tiny-vit-s8'.*another model.*--model tiny-vit-t8"):
        cd.load_head(path, cd.load_model("tiny-vit-s8", device="cpu"))


def test_files_that_are_not_heads_say_what_they_are(bundle: cd.models.Bundle, tmp_path: Path) -> None:
    model = tmp_path / "model.safetensors"
    cd.save_weights(bundle.model, model, "tiny-vit-t8")
    with pytest.raises(ModelLoadError, match="a CLIP model file \\('tiny-vit-t8' weights") as info:
        cd.load_head(model, bundle)
    one_line(info, model)
    plain = tmp_path / "plain.safetensors"
    plain.write_bytes(save({"w": torch.zeros(2)}))
    with pytest.raises(ModelLoadError, match="not a clipdense head file"):
        cd.load_head(plain, bundle)
    old = tmp_path / "old-coop.safetensors"
    old.write_bytes(save({"ctx": torch.zeros(2, 4)}, metadata={"clipdense.format": "adapter-v1",
                                                               "clipdense.adapter.method": "coop"}))
    with pytest.raises(ModelLoadError, match="retired adapter-v1 format; re-run `clipdense adapt`"):
        cd.load_head(old, bundle)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00not json")
    with pytest.raises(ModelLoadError, match="not a readable safetensors file"):
        cd.load_head(garbage, bundle)
    with pytest.raises(ModelLoadError, match="no head checkpoints"):
        cd.load_head(tmp_path, bundle)


def test_load_model_refuses_a_head_file(toy_file: tuple[ToyHead, Path]) -> None:
    _, path = toy_file
    with pytest.raises(ModelLoadError, match="a test/toy head file, not a model; expected CLIP weights"):
        cd.load_model(str(path), device="cpu")


def test_edited_or_damaged_header_is_refused(toy_file: tuple[ToyHead, Path], bundle: cd.models.Bundle,
                                             tmp_path: Path) -> None:
    _, path = toy_file
    swapped = rewrite_metadata(path, tmp_path / "swapped.safetensors",
                               **{"clipdense.head.classes": json.dumps(["dog", "cat", "sofa"])})
    with pytest.raises(ModelLoadError, match="does not match its digest") as info:
        cd.load_head(swapped, bundle)
    one_line(info, swapped)
    newer = rewrite_metadata(path, tmp_path / "newer.safetensors", **{"clipdense.format_version": "2"})
    with pytest.raises(ModelLoadError, match="head format version '2'; this clipdense reads version 1"):
        cd.load_head(newer, bundle)
    unknown = rewrite_metadata(path, tmp_path / "unknown.safetensors", **{"clipdense.head.kind": "detector/none"})
    with safe_open(str(unknown), framework="pt") as handle:      # a consistent header naming an absent kind
        rewrite_metadata(unknown, unknown, **{"clipdense.head.digest": metadata_digest(handle.metadata())})
    with pytest.raises(ModelLoadError, match="unknown head kind 'detector/none'; known: \\[.*'adapter/coop'"):
        cd.load_head(unknown, bundle)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(ModelLoadError, match="not a readable safetensors file"):
        cd.load_head(truncated, bundle)


def test_unregistered_module_and_bad_path_are_config_errors(bundle: cd.models.Bundle, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Linear is not a registered head kind"):
        cd.save_head(nn.Linear(2, 2), tmp_path / "x.safetensors", bundle)
    with pytest.raises(ConfigError, match="head files end in .safetensors"):
        cd.save_head(ToyHead(64, ["a"], 2), tmp_path / "x.pt", bundle)


def test_fingerprint_is_dtype_independent_and_sees_every_tensor(bundle: cd.models.Bundle) -> None:
    fingerprint = model_fingerprint(bundle.model)
    assert fingerprint == model_fingerprint(copy.deepcopy(bundle.model).to(torch.bfloat16))
    assert fingerprint != model_fingerprint(other_weights().model)
    changed = copy.deepcopy(bundle.model)
    with torch.no_grad():      # only a large matrix moves (the old fingerprint read small tensors only)
        changed.token_embedding.weight.mul_(1.05)
    assert changed.token_embedding.weight.numel() > 4096
    assert fingerprint != model_fingerprint(changed)


def few_shot_trainer(bundle: cd.models.Bundle, run: Path, steps: int) -> tuple[Trainer, ClipAdapter]:
    """CLIP-Adapter on the engine over 12 fixed random images, checkpointing every 2 steps."""
    torch.manual_seed(0)
    classes = ("crimson", "navy", "lime")
    objective = build_objective("clip-adapter", bundle, {}, DataInfo(classes=classes))
    noise = torch.Generator().manual_seed(1)
    images = [torch.randint(0, 256, (64, 64, 3), generator=noise, dtype=torch.uint8).numpy() for _ in range(12)]
    samples = [Sample(Image.fromarray(image), f"s{i}", image_label=i % 3) for i, image in enumerate(images)]
    batches = BatchStream(InMemorySamples(samples, seed=0), objective.sample_transform(), 4, seed=0,
                          collate=objective.collate)
    config = TrainConfig(objective="clip-adapter", model=bundle.name, steps=steps, batch_size=4, lr=1e-2,
                         warmup_steps=1, checkpoint_every=2, keep_checkpoints=3, log_every=2)
    return Trainer(config, objective, batches, run, bundle.name), objective.adapter


def test_engine_exports_a_head_training_run_as_a_head_and_resumes_exactly(bundle: cd.models.Bundle,
                                                                         tmp_path: Path) -> None:
    trainer, adapter = few_shot_trainer(bundle, tmp_path / "full", steps=4)
    trainer.fit()
    step, last = latest_checkpoint(tmp_path / "full")
    assert step == 4 and (last / HEAD_FILE).is_file() and not (last / "model.safetensors").exists()
    info = read_head_info(tmp_path / "full")                        # a run dir means its latest head
    assert info.kind == "adapter/clip-adapter" and info.metadata["clipdense.step"] == "4"
    assert_head_roundtrip(adapter.eval(), last / HEAD_FILE, bundle)

    cut = tmp_path / "cut"
    shutil.copytree(tmp_path / "full", cut)
    for later, path in list_checkpoints(cut):
        if later > 2:
            shutil.rmtree(path)
    resumed, again = few_shot_trainer(bundle, cut, steps=4)
    resumed.fit(resume_from=latest_checkpoint(cut)[1])
    for key, value in adapter.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key
