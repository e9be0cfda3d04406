"""Issue 27 (OV-LVIS): the `lvis` evaluation task rebuilds the federated ground truth from the samples and scores
a detector with the lvis API (perfect detections: AP 100 box and mask, none: 0), OV-LVIS's split (rare classes
never trained on: F-ViT's transform drops their boxes) and an F-ViT trained on the long-tailed world, evaluated."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from torch import nn

import clipdense as cd
from clipdense.data.readers import open_data
from clipdense.data.world.lvis import LvisWorldConfig, write_lvis_world
from clipdense.data.world.scenes import SynthConfig
from clipdense.errors import ConfigError, DataError
from clipdense.evaluation import evaluate
from clipdense.evaluation.lvis_ap import evaluate_lvis, lvis_report
from clipdense.evaluation.registry import EVAL_TASKS
from clipdense.evaluation.runner import plan_tasks

pytest.importorskip("lvis")

SMALL = LvisWorldConfig(train=130, val=12, classes=6, frequent=2, common=2, frequent_images=[122, 128],
                        common_images=[15, 40], rare_images=[2, 6], negatives=3)
WORLD = SynthConfig(image_size=48, seed=5, min_scale=0.25, max_scale=0.6)


@pytest.fixture(scope="module")
def lvis_world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lvisworld") / "lvis"
    write_lvis_world(root, WORLD, SMALL)
    return root


@dataclass
class _Config:
    novel: list[str] = field(default_factory=list)


class OracleDetector(nn.Module):
    """Answers each image, in reader order, with given detections (what a detector head's ``detect`` returns)."""

    kind = "detector/oracle"

    def __init__(self, base: list[str], novel: list[str], answers: list[dict], masks: bool) -> None:
        super().__init__()
        self.classes, self.config, self.answers, self.has_masks = base, _Config(novel), list(answers), masks
        self.logit_scale = nn.Parameter(torch.zeros(()))

    def detect(self, images, names):
        assert names == self.classes + self.config.novel
        return [self.answers.pop(0) for _ in images]


def _reader(world: Path):
    return open_data(str(world / "val.yaml"), {"boxes", "labels", "masks", "federated"}, "val")


def _oracle(world: Path, shift: float = 0.0, empty: bool = False) -> OracleDetector:
    reader, _, info = _reader(world)
    base = [c for c in info.classes if c not in info.novel]
    names = base + list(info.novel)
    answers = []
    for i in range(len(reader)):
        s = reader[i]
        keep = slice(0, 0) if empty else slice(None)
        answers.append({"boxes": s.boxes[keep] + shift, "scores": torch.ones(len(s.boxes))[keep],
                        "labels": torch.tensor([names.index(info.classes[c]) for c in s.labels.tolist()],
                                               dtype=torch.long)[keep],
                        "masks": s.masks[keep].float()})
    return OracleDetector(base, list(info.novel), answers, masks=True)


def test_perfect_detections_score_100_box_and_mask(lvis_world):
    reader, _, info = _reader(lvis_world)
    result = evaluate_lvis(_oracle(lvis_world), reader, batch_size=5)
    assert result["box"]["AP"] == 100.0 and result["mask"]["AP"] == 100.0
    for key in ("APr", "APc", "APf"):
        assert result["box"][key] == 100.0 and result["mask"][key] == 100.0
    assert result["novel"] == list(info.novel) and result["frequency_classes"] == {"r": 2, "c": 2, "f": 2}
    assert result["num_images"] == SMALL.val and result["num_boxes"] > SMALL.val


def test_no_or_shifted_detections_score_lower(lvis_world):
    reader, _, _ = _reader(lvis_world)
    assert evaluate_lvis(_oracle(lvis_world, empty=True), reader)["box"]["AP"] == 0.0
    shifted = evaluate_lvis(_oracle(lvis_world, shift=3.0), reader)
    assert 0 < shifted["box"]["AP"] < 100 and shifted["box"]["AP50"] > shifted["box"]["AP"]
    lines = lvis_report(shifted)
    assert lines[2].startswith("| box | ") and "rare" in lines[-1]


def test_lvis_task_needs_federated_labels(tmp_path, tiny_world, lvis_world, bundle):
    from clipdense.heads.detection import DetectorConfig, FViTDetector
    task = EVAL_TASKS["lvis"]
    assert task.needs == {"boxes", "labels", "masks", "federated"} and task.needs_head and task.head_role == "detector"
    head = tmp_path / "head.safetensors"
    cd.save_head(FViTDetector(bundle, DetectorConfig(image_size=64, fpn_channels=16, head_channels=16,
                                                     fc_channels=32), ["red circle"]), head, bundle)
    with pytest.raises(DataError, match="federated"):
        plan_tasks(tiny_world, "lvis", head=str(head))
    plan = plan_tasks(str(lvis_world / "val.yaml"), "all", head=str(head))
    assert "lvis" in [t.name for t in plan.tasks]
    with pytest.raises(ConfigError, match="frequencies"):
        evaluate_lvis(_oracle(lvis_world), object())


def test_ov_lvis_training_drops_rare_boxes(lvis_world, bundle):
    """F-ViT on LVIS data: the rare classes are novel (no classifier column trains, their boxes never reach the
    targets), common and frequent ones are base."""
    from clipdense.objectives import build_objective
    from clipdense.objectives.fvit import DetectionOptions
    reader, _, info = open_data(str(lvis_world / "train.yaml"), {"boxes", "labels"}, "train")
    objective = build_objective("fvit", bundle, DetectionOptions(image_size=64, fpn_channels=16, head_channels=16,
                                                                  fc_channels=32, templates="world"), info, 1)
    rare = set(info.novel)
    assert set(objective.vocabulary.novel) == rare and not rare & set(objective.vocabulary.base)
    transform = objective.sample_transform()
    seen = 0
    for i in range(len(reader)):
        sample = reader[i]
        names = [info.classes[c] for c in sample.labels.tolist()]
        if not rare & set(names):
            continue
        kept = transform.trained_only(sample)
        assert len(kept.boxes) == sum(n not in rare for n in names)
        seen += 1
    assert seen > 0


@pytest.mark.slow   # trains 30 steps and evaluates through cd.evaluate
def test_fvit_trains_on_the_long_tail_and_is_evaluated(lvis_world, tmp_path):
    from clipdense.train.config import TrainConfig
    from clipdense.train.run import run_training
    small = {"image_size": 96, "fpn_channels": 32, "head_channels": 32, "fc_channels": 64, "roi_batch": 64,
             "rpn_batch": 64, "rpn_pre_nms_train": 200, "rpn_post_nms_train": 100, "rpn_pre_nms_test": 200,
             "rpn_post_nms_test": 50, "templates": "world", "anchor_sizes": [16, 32, 64, 128, 256]}
    run = tmp_path / "run"
    run_training(TrainConfig(objective="fvit", data=str(lvis_world / "train.yaml"), model="tiny-vit-t8",
                             pretrained="synthworld", out=str(run), steps=30, batch_size=4, lr=1e-3,
                             warmup_steps=5, checkpoint_every=30, log_every=10, objective_args=small))
    backbone = cd.load_model("tiny-vit-t8", pretrained="synthworld", device="cpu")
    head = cd.load_head(run, backbone)
    assert set(head.config.novel) == set(_reader(lvis_world)[2].novel)
    result = evaluate(backbone, str(lvis_world / "val.yaml"), tasks="lvis", head=run)["tasks"]["lvis"]
    assert result["mask"] is None and 0 <= result["box"]["AP"] <= 100
    assert not math.isnan(result["box"]["APf"])
