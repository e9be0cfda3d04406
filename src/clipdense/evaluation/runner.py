"""The benchmark runner: a loaded model + any ``--data`` -> every requested task's numbers in one dict.

Tasks come from the registry (``registry.EVAL_TASKS``); each runs on the reader of ``--data`` that
fills the Sample fields it needs. ``--tasks all`` runs every task the data can feed and notes why the
others did not run; a task asked for by name that the data cannot feed is refused before anything runs.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Sequence

import torch

from ..data.sample import FIELDS, describe_fields
from ..data.spec import DataSpec
from ..errors import ConfigError, DataError
from ..models import DENSE_MODES, Bundle, resolve_device
from ..models.segmenters import segmenter_of
from .context import EvalContext, EvalSettings
from .inputs import EvalData, open_eval_data
from .regions import METHODS
from .registry import EVAL_TASKS, EvalTask, resolve_tasks, task_names


@dataclass
class EvalPlan:
    """What an evaluation will run: the data, the tasks it can feed, and why the others are left out."""

    data: EvalData
    tasks: list[EvalTask]
    skipped: dict[str, str]


def plan_tasks(data: str | os.PathLike | DataSpec, tasks: str | Sequence[str] = "all",
               split: str = "val", head: str | os.PathLike | None = None) -> EvalPlan:
    """Check ``tasks`` against ``data`` (and tasks that evaluate a head against ``head``) before any model is loaded.

    Raises:
        ConfigError: an unknown task name.
        DataError: a task named explicitly that the data cannot feed (one line: the task and what the data
            lacks), or, with 'all', data that feeds no task at all.
    """
    names = resolve_tasks(tasks)
    explicit = task_names(tasks) != ["all"]
    eval_data = open_eval_data(data, split)
    runnable, skipped = [], {}
    for task in (EVAL_TASKS[name] for name in names):
        problem = eval_data.problem(task)
        if problem is None and task.needs_head and head is None:
            if explicit:
                raise ConfigError(f"--tasks {task.name} evaluates a trained head: pass --head HEAD")
            skipped[task.name] = "needs --head"
        elif problem is None:
            runnable.append(task)
        elif explicit:
            raise DataError(problem)
        else:
            skipped[task.name] = eval_data.lacks(task)
    if not runnable:
        raise DataError(f"--data {eval_data.spec} has {describe_fields(eval_data.fields())}: no evaluation task "
                        "can run on it (" + "; ".join(f"{name} {why}" for name, why in skipped.items()) + ")")
    return EvalPlan(eval_data, runnable, skipped)


def resolve_modes(modes: str | Sequence[str]) -> tuple[str, ...]:
    """'all', 'a,b' or a list -> validated dense modes."""
    names = [m.strip() for m in (modes.split(",") if isinstance(modes, str) else modes) if m.strip()]
    if names == ["all"]:
        return tuple(DENSE_MODES)
    unknown = [m for m in names if m not in DENSE_MODES]
    if unknown or not names:
        raise ConfigError(f"--dense-mode: unknown {unknown or names}, expected 'all' or some of {list(DENSE_MODES)}")
    return tuple(dict.fromkeys(names))


CROP_VIEWS = ("letterbox", "stretch")


def evaluate(bundle: Bundle, data: str | os.PathLike | DataSpec, tasks: str | Sequence[str] = "all",
             dense_mode: str | Sequence[str] = "maskclip", image_size: int | None = None, batch_size: int = 32,
             device: str | torch.device | None = None, split: str = "val", templates: str = "imagenet",
             window: int | None = None, stride: int | None = None, background_threshold: float = 0.1,
             region_methods: Sequence[str] = METHODS, show_progress: bool = False,
             head: str | os.PathLike | None = None, crops: str = "letterbox") -> dict:
    """Run the requested tasks on ``data``; returns one JSON-ready dict (see ``to_markdown``).

    Args:
        data: anything ``--data`` accepts (a world, a CSV, shards, ``coco:...``, ``semseg:...``,
            ``imagefolder:...``, a data YAML).
        tasks: 'all' (every registered task the data can feed), or names.
        split: the split of a world; other data is evaluated as given.
        dense_mode: one mode, several (list or 'a,b') or 'all'; dense tasks run once per mode. A model with a
            registered segmenter (GroupViT) runs them once, by its own segments, named after its segmenter.
        image_size: short side for dense tasks (segmentation, regions); default: the size the model's dense
            map is meant for (``bundle.dense_size``: a CLIPSelf student's training size), else its input size.
            Zero-shot and retrieval always use the model's own preprocessing.
        window / stride: sliding-window inference for segmentation (pixels, after resizing); None: whole image.
        background_threshold: probability under which a pixel is background in the things-only setting.
        head: a trained head (file or run dir) for the tasks that evaluate one (detection).
        crops: how the ``crops`` baseline fits a region to the tower's input: "letterbox" (CLIPSelf's published
            teacher view) or "stretch"; match the CLIPSelf run being compared (its ``keep_aspect``).

    Returns:
        ``{"tasks": {name: result}, "skipped_tasks": {name: "needs ..."}, "data_fields": [...],
        "seconds": ..., "images_per_second": ..., "skipped_images": ..., ...}`` with the run's settings.
    """
    if crops not in CROP_VIEWS:
        raise ConfigError(f"--crops {crops!r}: expected one of {', '.join(CROP_VIEWS)}")
    plan = plan_tasks(data, tasks, split, head)
    short_side = image_size or bundle.dense_size or min(bundle.image_size)
    own = segmenter_of(bundle.model)   # a model that segments by itself (GroupViT): its one way, not dense modes
    modes = (own.name,) if own is not None else resolve_modes(dense_mode)
    settings = EvalSettings(modes, short_side, batch_size, templates,
                            window, stride, background_threshold, tuple(region_methods), show_progress,
                            None if head is None else str(head), crops == "letterbox")
    target = resolve_device(device)
    bundle.model.to(target).eval()
    ctx = EvalContext(bundle, target, settings, plan.data)
    results: dict = {"model": bundle.name, "pretrained": bundle.pretrained, "data": str(plan.data.spec),
                     "data_format": plan.data.spec.format, "split": plan.data.split,
                     "dense_modes": list(settings.modes), "templates": templates, "image_size": settings.short_side, "crops": crops,
                     "window": window, "stride": stride, "background_threshold": background_threshold,
                     "device": str(target), "data_fields": [f for f in FIELDS if f in plan.data.fields()],
                     "tasks": {}, "skipped_tasks": dict(plan.skipped), "seconds": {}, "images_per_second": {}}
    with torch.no_grad():
        for task in plan.tasks:
            start = time.perf_counter()
            result, images = task.run(ctx, plan.data.open(task))
            seconds = time.perf_counter() - start
            results["tasks"][task.name] = result
            results["seconds"][task.name] = round(seconds, 3)
            results["images_per_second"][task.name] = round(images / max(seconds, 1e-9), 2)
    results["skipped_images"] = plan.data.skips.count
    results["skipped_examples"] = list(plan.data.skips.examples)
    return results
