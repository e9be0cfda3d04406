"""Options declared once: task options set by --task-arg, the registered region methods, the shared background
rule of segment / serve / eval, and the evaluation's small signatures."""
from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import pytest
import torch
from PIL import Image

from clipdense.cli.main import main
from clipdense.data import SynthConfig, write_world
from clipdense.errors import ConfigError
from clipdense.evaluation import (EVAL_TASKS, REGION_METHODS, EvalSettings, RegionBatch, RegionEncoders, RegionMethod,
                                  RegionOptions, SegmentationOptions, build_settings, build_task_options,
                                  parse_task_args, region_classification, register_region_method,
                                  resolve_region_methods)
from clipdense.evaluation.segmentation import _background_head
from clipdense.tasks.segment import BACKGROUND, SEG_LOGIT_SCALE, class_probabilities, labels_from_probabilities
from clipdense.web.render import render
from clipdense.web.results import Analysis


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world")
    write_world(SynthConfig(out=str(out), train=0, val=2, image_size=64, classify_train_per_class=0,
                            classify_val_per_class=1, shard_size=100))
    return out


# ---------------------------------------------------------------- task options

def test_task_options_from_task_args_are_typed_and_checked() -> None:
    raw = parse_task_args({"segmentation.window": 224, "segmentation.stride": "112", "regions.methods": "rois,crops"})
    built = build_task_options([EVAL_TASKS["segmentation"], EVAL_TASKS["regions"], EVAL_TASKS["zeroshot"]], raw)
    assert built["segmentation"] == SegmentationOptions(window=224, stride=112, background_threshold=0.1)
    assert built["regions"] == RegionOptions(methods=("rois", "crops"), crops="letterbox", thing_expand=1.5)
    assert set(built) == {"segmentation", "regions", "zeroshot"}          # defaults for the tasks not named
    assert EVAL_TASKS["segmentation"].build_options({"window": "none"}).window is None


@pytest.mark.parametrize("given,message", [
    ({"segmentation.window": 0}, "--task-arg segmentation.window 0: expected a size in pixels >= 1"),
    ({"segmentation.window": "big"}, "--task-arg segmentation.window 'big': expected a size in pixels (int)"),
    ({"segmentation.window": 2.5}, "--task-arg segmentation.window 2.5: expected a size in pixels (int)"),
    ({"segmentation.background_threshold": 1.5},
     "--task-arg segmentation.background_threshold 1.5: expected a probability >= 0.0 and <= 1.0"),
    ({"segmentation.stride": 8}, "--task-arg segmentation.stride 8: only used with --task-arg segmentation.window"),
    ({"segmentation.windw": 8}, "--task-arg segmentation.windw: unknown option, expected one of: window, stride, "
                                "background_threshold"),
    ({"regions.methods": "rois,boxes"}, "--task-arg regions.methods 'rois,boxes': unknown ['boxes'], expected some "
                                        "of rois, crops, maskpool"),
    ({"regions.crops": "squash"}, "--task-arg regions.crops 'squash': unknown ['squash'], expected one of letterbox, "
                                  "stretch"),
    ({"zeroshot.k": 3}, "--task-arg zeroshot.k: unknown option, expected one of: none"),
])
def test_bad_task_options_are_one_line_naming_the_key(given: dict, message: str) -> None:
    raw = parse_task_args(given)
    label = lambda task, key: f"--task-arg {task}.{key}"   # noqa: E731 - how the CLI names them
    with pytest.raises(ConfigError) as info:
        build_task_options([], raw, label)
    assert str(info.value) == message


def test_task_arg_names_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"^--task-arg window=8: expected TASK.KEY=VALUE"):
        parse_task_args({"window": 8})
    with pytest.raises(ConfigError, match=r"^--task-arg segmentaton.window: unknown task 'segmentaton', expected"):
        parse_task_args({"segmentaton.window": 8})


def test_common_settings_are_one_small_dataclass() -> None:
    settings = build_settings(None, {"dense_mode": "maskclip,naclip", "batch_size": "4", "device": "cpu"})
    assert settings == EvalSettings(batch_size=4, device="cpu", dense_mode=("maskclip", "naclip"))
    with pytest.raises(ConfigError, match=r"^batch_size 0: expected a count >= 1$"):
        build_settings(None, {"batch_size": 0})
    with pytest.raises(ConfigError, match=r"^window: unknown option"):   # a task's option is not a setting
        build_settings(None, {"window": 224})


def _cli(world: Path, *extra: str) -> int:
    return main(["eval", "--data", str(world), "--tasks", "zeroshot", "--device", "cpu", "--no-progress", *extra])


@pytest.mark.parametrize("extra,line", [
    (("--task-arg", "segmentation.window=abc"), "--task-arg segmentation.window 'abc': expected a size in pixels"),
    (("--task-arg", "regions.nope=1"), "--task-arg regions.nope: unknown option, expected one of: methods, crops, "
                                       "thing_expand"),
    (("--task-arg", "nonesuch.window=1"), "--task-arg nonesuch.window: unknown task 'nonesuch'"),
    (("--task-arg", "window"), "--task-arg 'window': expected KEY=VALUE"),
    (("--window", "0"), "--window 0: expected a size in pixels >= 1"),
    (("--stride", "8"), "--stride 8: only used with --window"),
    (("--task-arg", "segmentation.stride=8"), "--task-arg segmentation.stride 8: only used with --window"),
    (("--region-methods", "nope"), "--region-methods 'nope': unknown ['nope'], expected some of rois"),
    (("--dense-mode", "nope"), "--dense-mode 'nope': unknown ['nope'], expected some of all, vanilla"),
])
def test_cli_task_args_and_flags_refuse_bad_values_in_one_line(world: Path, extra: tuple[str, ...], line: str,
                                                              capsys: pytest.CaptureFixture) -> None:
    assert _cli(world, *extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"clipdense eval: error: {line}"), err


def test_cli_task_arg_reaches_the_task(world: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    assert main(["eval", "--data", str(world), "--tasks", "segmentation", "--device", "cpu", "--no-progress",
                 "--bg-threshold", "0.2", "--task-arg", "segmentation.window=32", "--out", str(out)]) == 0
    import json
    results = json.loads(out.read_text())
    assert results["task_options"]["segmentation"] == {"window": 32, "stride": None, "background_threshold": 0.2}
    assert results["tasks"]["segmentation"]["maskclip"]["background"]["threshold"] == 0.2
    assert "sliding window 32" in out.with_suffix(".md").read_text()


# ---------------------------------------------------------------- region methods

def test_region_methods_are_registered_and_checked_once() -> None:
    assert list(REGION_METHODS) == ["rois", "crops", "maskpool"]
    assert [m.dense for m in REGION_METHODS.values()] == [True, False, True]
    assert [m.name for m in resolve_region_methods("maskpool, rois,rois")] == ["maskpool", "rois"]
    with pytest.raises(ConfigError, match=r"^region methods: unknown \['boxes'\], expected some of"):
        resolve_region_methods(["rois", "boxes"])
    with pytest.raises(ConfigError, match=r"^region methods: unknown \[\]"):
        resolve_region_methods("")
    with pytest.raises(ConfigError, match=r"^region method 'rois' needs \['pool_boxes'\] \(got None\)"):
        REGION_METHODS["rois"].check(RegionEncoders(encode_dense=lambda x: x))
    with pytest.raises(ValueError, match="already registered"):
        register_region_method(REGION_METHODS["rois"])


def test_a_new_region_method_is_one_registration() -> None:
    """A method registered later is a valid choice of the regions task and runs in region_classification."""
    def corner(batch: RegionBatch, dense, encoders: RegionEncoders, thing_mask: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.eye(3)[labels] for labels in batch.labels])   # an oracle: the class one-hot
    register_region_method(RegionMethod("oracle", corner, needs=(), dense=False))
    try:
        assert EVAL_TASKS["regions"].build_options({"methods": "oracle"}).methods == ("oracle",)
        batch = RegionBatch(torch.zeros(2, 3, 8, 8), [torch.tensor([[0.0, 0, 4, 4]])] * 2,
                            [torch.ones(1, 8, 8, dtype=torch.bool)] * 2, [torch.tensor([0]), torch.tensor([2])])
        res = region_classification(torch.eye(3), [batch], [0, 1], [2], RegionEncoders(), methods=("oracle",))
        assert res["oracle"]["things"]["top1"] == 1.0 and res["oracle"]["stuff"]["top1"] == 1.0
    finally:
        REGION_METHODS.pop("oracle")


# ---------------------------------------------------------------- one background rule

def test_segment_serve_and_eval_give_the_same_labels_on_a_hand_made_map() -> None:
    """(2 classes, 1 x 4 pixels): sure cat, unsure dog, exactly at the threshold, sure dog."""
    probabilities = torch.tensor([[[0.9, 0.45, 0.4, 0.2]], [[0.1, 0.55, 0.6, 0.8]]])      # (C, H, W)
    threshold = 0.6
    expected = torch.tensor([[0, BACKGROUND, 1, 1]])                  # strictly below 0.6 is background
    segment_labels = labels_from_probabilities(probabilities[None], threshold)[0]
    assert torch.equal(segment_labels, expected)
    # eval's things-only head: the same rule, background 0 and thing i -> i + 1
    head = _background_head(2, [0, 1], threshold, lambda p: p, channels=None)
    assert torch.equal(head.predict(probabilities[None])[0], expected + 1)
    # the page: the same labels on its overlay, so the same shares in its legend
    analysis = Analysis(Image.new("RGB", (4, 1)), ["cat", "dog"], probabilities, {"cat": 0.5, "dog": 0.5},
                        torch.zeros(1, 4), "cat", model="toy")
    legend = {e["class"]: e["share"] for e in render(analysis, threshold).legend}
    assert legend == {"cat": 25.0, "dog": 50.0, "background": 25.0}


def test_zero_shot_probabilities_use_one_fixed_temperature() -> None:
    """Cosines become probabilities the same way for segment, the page and eval: softmax(50 x cosine)."""
    cosines = torch.tensor([[[[0.30]], [[0.28]]]])                     # (1, 2, 1, 1)
    probs = class_probabilities(cosines)
    assert SEG_LOGIT_SCALE == 50.0
    assert probs[0, :, 0, 0].tolist() == pytest.approx([1 / (1 + torch.exp(torch.tensor(-1.0)).item()),
                                                        1 / (1 + torch.exp(torch.tensor(1.0)).item())])
    head = _background_head(2, [0, 1], 0.7, class_probabilities, channels=None)
    assert head.predict(cosines)[0].item() == 1                        # top probability 0.731 >= 0.7: thing 0
    assert labels_from_probabilities(probs, 0.75)[0].item() == BACKGROUND


# ---------------------------------------------------------------- small signatures

def test_no_evaluation_function_takes_more_than_8_parameters() -> None:
    import clipdense.evaluation as evaluation
    import importlib
    import pkgutil
    too_many = []
    for info in pkgutil.iter_modules(evaluation.__path__):
        module = importlib.import_module(f"clipdense.evaluation.{info.name}")
        for name, obj in vars(module).items():
            functions = [obj] + [v for k, v in vars(obj).items() if inspect.isfunction(v) and not
                                 (k == "__init__" and dataclasses.is_dataclass(obj))] if inspect.isclass(obj) else [obj]
            for fn in functions:
                if inspect.isfunction(fn) and fn.__module__ == module.__name__:
                    count = len([p for p in inspect.signature(fn).parameters.values() if p.kind != p.VAR_KEYWORD])
                    if count > 8:
                        too_many.append(f"{module.__name__}.{fn.__qualname__} ({count})")
    assert too_many == []
