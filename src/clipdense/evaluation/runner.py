"""The benchmark runner: a loaded model + any ``--data`` -> every requested task's numbers in one dict.

Tasks come from the registry (``registry.EVAL_TASKS``); each runs on the reader of ``--data`` that
fills the Sample fields it needs. ``--tasks all`` runs every task the data can feed and notes why the
others did not run; a task asked for by name that the data cannot feed is refused before anything runs.
"""
from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch

from ..data.sample import FIELDS, describe_fields
from ..data.spec import DataSpec
from ..errors import ConfigError, DataError
from ..models import Bundle, resolve_device
from .context import EvalContext, EvalSettings, resolve_modes
from .inputs import EvalData, open_eval_data
from .options import build_options
from .registry import EVAL_TASKS, EvalTask, resolve_tasks, task_names

__all__ = ["EvalPlan", "build_settings", "build_task_options", "evaluate", "plan_tasks", "resolve_modes"]


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
    if head is not None and isinstance(head, (str, os.PathLike)):
        runnable = _fitting_head(head, runnable, skipped, explicit)
    if not runnable:
        raise DataError(f"--data {eval_data.spec} has {describe_fields(eval_data.fields())}: no evaluation task "
                        "can run on it (" + "; ".join(f"{name} {why}" for name, why in skipped.items()) + ")")
    return EvalPlan(eval_data, runnable, skipped)


def _fitting_head(head: str | os.PathLike, runnable: list[EvalTask], skipped: dict[str, str],
                  explicit: bool) -> list[EvalTask]:
    """The tasks left once ``--head``'s kind is known (read from its header, before any model loads): a task that
    needs another kind is refused when named, else left out with a note; a head that no task uses is refused
    rather than silently ignored."""
    from ..heads.expect import ROLES, read_any_head

    kind = read_any_head(head, "--head", "a trained head").kind
    keep = []
    for task in runnable:
        role = ROLES.get(task.head_role)
        if role is None or role.fits(kind) or not task.needs_head:
            keep.append(task)   # undeclared or fitting; a task that may use a head runs without another kind
        elif explicit:
            raise ConfigError(role.refusal(f"--head {head}", kind) + f" (for --tasks {task.name})")
        else:
            skipped[task.name] = f"needs {role.what}, --head is a {kind} head"
    users = [t for t in keep if t.head_role == "" or (t.head_role in ROLES and ROLES[t.head_role].fits(kind))]
    if keep and not users:
        wanted = sorted({f"{ROLES[t.head_role].what} ({t.name})" for t in EVAL_TASKS.values() if t.head_role in ROLES})
        raise ConfigError(f"--head {head}: a {kind} head, and no task run on this data uses one; expected "
                          + ", ".join(wanted))
    return keep


def build_settings(settings: EvalSettings | None = None, overrides: Mapping[str, Any] | None = None,
                   label: Callable[[str], str] | None = None) -> EvalSettings:
    """``settings`` (default: ``EvalSettings()``) with ``overrides``, every field checked as declared."""
    base = settings if settings is not None else EvalSettings()
    values = {f.name: getattr(base, f.name) for f in dataclasses.fields(EvalSettings)}
    return build_options(EvalSettings, {**values, **(overrides or {})}, label or (lambda key: key))


def build_task_options(tasks: Sequence[EvalTask], task_options: Mapping[str, Any] | None = None,
                       label: Callable[[str, str], str] | None = None) -> dict[str, Any]:
    """Each task's options dataclass from ``task_options[name]`` (a mapping or an instance); options of a task
    that is registered but not run are checked too, and an unknown task name is refused."""
    given = dict(task_options or {})
    unknown = [name for name in given if name not in EVAL_TASKS]
    if unknown:
        raise ConfigError(f"task options: unknown task {unknown[0]!r}, expected one of {', '.join(EVAL_TASKS)}")
    say = label or (lambda name, key: f"{name}.{key}")
    built = {name: EVAL_TASKS[name].build_options(values, lambda key, name=name: say(name, key))
             for name, values in given.items()}
    return {task.name: built[task.name] if task.name in built else task.build_options() for task in tasks}


def evaluate(bundle: Bundle, data: str | os.PathLike | DataSpec, tasks: str | Sequence[str] = "all",
             settings: EvalSettings | None = None, task_options: Mapping[str, Any] | None = None,
             head: str | os.PathLike | None = None, **overrides: Any) -> dict:
    """Run the requested tasks on ``data``; returns one JSON-ready dict (see ``to_markdown``).

    Args:
        data: anything ``--data`` accepts (a world, a CSV, shards, ``coco:...``, ``semseg:...``,
            ``imagefolder:...``, a data YAML).
        tasks: 'all' (every registered task the data can feed), or names.
        settings: what every task shares (split, batch size, device, templates, dense modes, image size).
        task_options: task name -> its options (a mapping of its option fields, or its options dataclass), e.g.
            ``{"segmentation": {"window": 224}, "regions": {"methods": "rois,crops"}}``.
        head: a trained head (file or run dir) for the tasks that evaluate one (detection, segmentation).
        overrides: ``EvalSettings`` fields set by name (``device="cpu", batch_size=4``), over ``settings``.

    A model with a registered segmenter (GroupViT) runs the dense tasks once, by its own segments, named after
    its segmenter. Zero-shot and retrieval always use the model's own preprocessing.

    Returns:
        ``{"model", "pretrained", "data", "split", "tasks": {name: result}, "skipped_tasks": {name: "needs ..."},
        "data_fields": [...], "task_options": {name: options}, "seconds": ..., "images_per_second": ...,
        "skipped_images": ..., ...}`` with the run's settings.
    """
    settings = build_settings(settings, overrides)
    plan = plan_tasks(data, tasks, settings.split, head)
    options = build_task_options(plan.tasks, task_options)
    target = resolve_device(settings.device)
    bundle.model.to(target).eval()
    ctx = EvalContext(bundle, target, settings, plan.data, None if head is None else str(head))
    results: dict = {"model": bundle.name, "pretrained": bundle.pretrained, "data": str(plan.data.spec),
                     "data_format": plan.data.spec.format, "split": plan.data.split,
                     "dense_modes": list(ctx.modes), "templates": settings.templates, "image_size": ctx.short_side,
                     "device": str(target), "data_fields": [f for f in FIELDS if f in plan.data.fields()],
                     "task_options": {name: dataclasses.asdict(o) for name, o in options.items()},
                     "tasks": {}, "skipped_tasks": dict(plan.skipped), "seconds": {}, "images_per_second": {}}
    with torch.no_grad():
        for task in plan.tasks:
            start = time.perf_counter()
            result, images = task.run(ctx, plan.data.open(task), options[task.name])
            seconds = time.perf_counter() - start
            results["tasks"][task.name] = result
            results["seconds"][task.name] = round(seconds, 3)
            results["images_per_second"][task.name] = round(images / max(seconds, 1e-9), 2)
    results["skipped_images"] = plan.data.skips.count
    results["skipped_examples"] = list(plan.data.skips.examples)
    return results
