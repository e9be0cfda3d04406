"""The runner, the world adapter, the report and `clipdense eval`, end to end on a tiny generated world."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from clipdense.cli.main import main
from clipdense.errors import ConfigError
from clipdense.evaluation import EVAL_TASKS, json_ready, open_eval_data, resolve_modes, resolve_tasks, to_markdown
from clipdense.evaluation.regions import region_batches

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools")


@pytest.fixture
def world(tiny_world: Path) -> Path:
    """The run's shared tiny world (conftest's TINY_WORLD: 6 val scenes, one classification image per thing)."""
    return tiny_world


def test_world_data_scales_boxes_and_keeps_label_resolution(world: Path) -> None:
    data = open_eval_data(world)
    meta = json.loads((world / "world.json").read_text())
    assert data.split == "val" and data.things == meta["things"]
    assert set(data.groups) == {"base", "novel"} and set(data.groups["novel"]) <= set(meta["things"])
    reader = data.open(EVAL_TASKS["regions"])
    assert reader.classes == meta["classes"]
    blank = lambda im: torch.zeros(3, im.height, im.width)  # noqa: E731
    full = list(region_batches(reader, blank, None, 4, data.skips))
    half = list(region_batches(reader, blank, 32, 4, data.skips))
    assert [b.images.shape[-1] for b in full] == [64, 64] and half[0].images.shape[-2:] == (32, 32)
    assert torch.allclose(half[0].boxes[0] * 2, full[0].boxes[0])
    labels = torch.cat([lab for b in full for lab in b.labels])
    assert (labels < len(reader.classes)).all() and not reader.isthing[labels].all()
    semseg = data.open(EVAL_TASKS["segmentation"])
    assert len(semseg) == 6 and semseg[0].semantic.shape == (64, 64) and semseg.classes == meta["classes"]


def test_retrieval_reads_shards_like_the_csv(world: Path, tiny_bundle) -> None:
    """The world's val CSV and its val shards hold the same pairs: the same recalls, split only for the world."""
    from clipdense.evaluation import evaluate
    by_csv = evaluate(tiny_bundle, world, tasks="retrieval", device="cpu")
    by_shards = evaluate(tiny_bundle, str(world / "shards" / "val-*.tar"), tasks="retrieval", device="cpu")
    assert by_csv["split"] == "val" and by_shards["split"] is None and by_shards["data_format"] == "wds"
    assert by_shards["tasks"]["retrieval"] == by_csv["tasks"]["retrieval"]
    assert by_shards["tasks"]["retrieval"]["num_images"] == 6


def test_resolvers_and_report_helpers() -> None:
    assert resolve_tasks("all")[:4] == ("zeroshot", "retrieval", "segmentation", "regions")
    assert resolve_tasks("regions,zeroshot") == ("zeroshot", "regions")
    assert "maskclip" in resolve_modes("all") and resolve_modes("sclip,sclip") == ("sclip",)
    with pytest.raises(ConfigError, match="--tasks"):
        resolve_tasks("zeroshot,detect")
    with pytest.raises(ConfigError, match="--dense-mode"):
        resolve_modes("maskclipp")
    assert json_ready({"a": math.nan, "b": (1.0, math.inf)}) == {"a": None, "b": [1.0, None]}


def _strict_json(path: Path) -> dict:
    def refuse(name: str) -> None:
        raise AssertionError(f"{path}: non-standard JSON constant {name}")
    return json.loads(path.read_text(), parse_constant=refuse)


def test_cli_eval_end_to_end(world: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "res" / "results.json"
    code = main(["eval", "--model", "tiny-vit-t8", "--data", str(world), "--device", "cpu", "--templates", "photo",
                 "--dense-mode", "maskclip,naclip", "--window", "48", "--batch-size", "4", "--out", str(out),
                 "--no-progress"])
    assert code == 0
    res = _strict_json(out)
    tasks = res["tasks"]
    num_things = len(json.loads((world / "world.json").read_text())["things"])
    assert tasks["zeroshot"]["num_samples"] == num_things
    assert tasks["zeroshot"]["chance"]["top1"] == pytest.approx(1 / num_things)
    assert 0.0 <= tasks["zeroshot"]["top1"] <= tasks["zeroshot"]["top5"] <= 1.0
    assert tasks["retrieval"]["num_images"] == 6 and tasks["retrieval"]["text_to_image"]["R@10"] == 1.0
    assert set(tasks["segmentation"]) == {"maskclip", "naclip"}
    seg = tasks["segmentation"]["naclip"]
    assert seg["argmax"]["num_pixels"] > 0 and 0 <= seg["argmax"]["miou"] <= 1
    assert seg["background"]["threshold"] == 0.1
    regions = tasks["regions"]
    assert set(regions["dense"]["maskclip"]) == {"rois", "maskpool"} and "things" in regions["crops"]
    assert regions["num_regions"]["things"] > 0
    printed = capsys.readouterr().out
    assert "| *chance* |" in printed and "naclip" in printed and "sliding window 48" in printed
    assert out.with_suffix(".md").read_text() in printed


def test_cli_eval_user_errors_exit_2(world: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["eval", "--model", "tiny-vit-t8", "--data", str(world), "--tasks", "detect",
                 "--device", "cpu"]) == 2
    assert "--tasks" in capsys.readouterr().err
    assert main(["eval", "--model", "tiny-vit-t8", "--data", str(world / "nope"), "--device", "cpu"]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["eval", "--model", "tiny-vit-t8", "--data", str(world), "--out", "r.txt"]) == 2


def test_markdown_reports_missing_values_and_chance() -> None:
    res = {"model": "m", "tasks": {"zeroshot": {"top1": 0.5, "top5": 1.0, "mean_per_class_top1": math.nan,
                                                "num_samples": 4, "num_classes": 2,
                                                "chance": {"top1": 0.5, "top5": 1.0}}},
           "seconds": {"zeroshot": 1.0}, "images_per_second": {"zeroshot": 4.0}}
    text = to_markdown(res)
    assert "| zero-shot (4 images, 2 classes) | top-1 | 50.0 | 50.0 |" in text
    assert "| mean per-class top-1 | – |" in text
