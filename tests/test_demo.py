"""`clipdense demo --quick`: every stage runs and the report holds real tables and pictures."""
from __future__ import annotations

import json

import pytest
import yaml
from PIL import Image

from clipdense.cli.main import main
from clipdense.demo.config import DemoConfig, demo_command


@pytest.mark.slow
def test_quick_demo_writes_report(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    report = (out / "report.md").read_text()
    for heading in ("Whole-image recognition", "Region recognition", "Zero-shot semantic segmentation",
                    "Training-free dense modes"):
        assert heading in report
    for row in ("| pretrained |", "| clipself boxes |", "| clipself boxes+guard |", "| clipself grid |",
                "| clipself grid+guard |", "| naclip |"):
        assert row in report
    assert "of teacher crops" in report and "Dense maps are read at 96 px" in report
    assert f"Command: `clipdense demo --quick --out {out}`" in report   # the line that remakes it
    assert Image.open(out / "figures" / "losses.png").size[0] > 100
    assert Image.open(out / "figures" / "segmentations.png").size[0] > 100
    assert "Trained open-vocabulary segmentation (Cat-Seg)" in report and "| Cat-Seg head |" in report
    assert Image.open(out / "figures" / "catseg.png").size[0] > 100
    catseg = json.loads((out / "eval" / "catseg.json").read_text())["tasks"]["segmentation"]
    assert "head segmenter/catseg" in catseg and "miou_unseen" in catseg["naclip"]["argmax"]
    assert "Open-vocabulary detection (F-ViT)" in report and "| F-ViT, clipself boxes |" in report
    assert Image.open(out / "figures" / "detections.png").size[0] > 100
    detection = json.loads((out / "eval" / "detection.json").read_text())
    assert list(detection) == ["F-ViT, start model", "F-ViT, clipself boxes"]
    assert all(set(r["tasks"]["detection"]["AP50"]) == {"novel", "base", "all"} for r in detection.values())
    results = json.loads((out / "eval" / "results.json").read_text())
    assert set(results) == {"pretrained", "clipself boxes", "clipself boxes+guard", "clipself grid",
                            "clipself grid+guard"}
    assert all(r["image_size"] == 96 for r in results.values())        # every model read at the students' size
    distilled = yaml.safe_load((out / "clipself-boxes-guard" / "config.yaml").read_text())["objective_args"]
    assert distilled["train"] == "tower" and distilled["normalize_patches"] is False   # the demo's recipe
    assert "total" in capsys.readouterr().out
    # a second run reuses its own folder; a foreign folder is refused
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "keep.txt").write_text("precious")
    assert main(["demo", "--quick", "--out", str(tmp_path / "foreign")]) == 2
    assert (tmp_path / "foreign" / "keep.txt").read_text() == "precious"


@pytest.mark.parametrize("config, line", [
    (DemoConfig(), "clipdense demo"),
    (DemoConfig(pretrained="synthworld-silc", distill_steps=50),
     "clipdense demo --pretrained synthworld-silc --distill-steps 50"),
    (DemoConfig(pretrained=None, student_size=128), "clipdense demo --from-scratch [student_size=128]"),
])
def test_demo_command_names_every_changed_setting(config, line):
    assert demo_command(config) == line


def test_demo_refuses_an_unknown_detector_backbone(tmp_path, capsys):
    """A typo in detect_backbone is one line before any stage runs (not a KeyError minutes later)."""
    (tmp_path / "demo.yaml").write_text("detect_backbone: clipself boxes+gaurd\n")
    assert main(["demo", "--config", str(tmp_path / "demo.yaml"), "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "detect_backbone 'clipself boxes+gaurd'" in err and "clipself grid" in err
    assert not (tmp_path / "d").exists()


def test_demo_refuses_negative_head_steps(tmp_path, capsys):
    (tmp_path / "demo.yaml").write_text("catseg_steps: -1\n")
    assert main(["demo", "--config", str(tmp_path / "demo.yaml"), "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "catseg_steps -1: expected a number of steps >= 0" in err


def test_demo_refuses_a_bad_student_size_before_any_stage(tmp_path, capsys):
    (tmp_path / "demo.yaml").write_text("student_size: -1\n")
    assert main(["demo", "--config", str(tmp_path / "demo.yaml"), "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "student_size -1: expected" in err
    assert not (tmp_path / "d").exists()


def test_demo_refuses_an_unknown_distill_train(tmp_path, capsys):
    (tmp_path / "demo.yaml").write_text("distill_train: everything\n")
    assert main(["demo", "--config", str(tmp_path / "demo.yaml"), "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "distill_train 'everything'" in err and "blocks, tower" in err
    assert not (tmp_path / "d").exists()
