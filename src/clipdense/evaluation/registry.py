"""Evaluation tasks by name: each declares the Sample fields its data must carry, its own options and how it runs.

A task module registers itself with ``@register_task``; the runner picks the tasks ``--tasks`` names,
checks that ``--data`` can feed them (``clipdense.data.resolve_reader``), builds each task's options from its
dataclass (``--task-arg TASK.KEY=VALUE``, checked by ``options.build_options``), opens the matching reader and
calls the task with an ``EvalContext`` (the model as encode functions, the common settings), that reader and
its options. Adding a task is one module that registers itself, imported by ``evaluation/__init__``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

from ..data.readers import IMAGE
from ..data.sample import FIELDS
from ..errors import ConfigError
from .context import EvalContext
from .options import build_options, describe


@dataclass(frozen=True)
class NoOptions:
    """A task with no options of its own."""


#: (context, reader, options) -> (JSON-ready result, images processed); the reader fills the task's ``needs``.
TaskFn = Callable[[EvalContext, Any, Any], "tuple[dict, int]"]


@dataclass(frozen=True)
class EvalTask:
    """A registered benchmark task.

    Args:
        name: what ``--tasks`` calls it and the key of its result in ``results["tasks"]``.
        needs: Sample fields its reader must fill (``clipdense.data.sample.FIELDS``), and ``"image"`` when it
            reads the images (readers of point clouds or sounds have none).
        run: the task itself.
        summary: one line for help texts.
        report: result -> Markdown lines of its section in ``to_markdown`` (the built-in tasks have their
            tables in ``report.py``; without either, the section shows the result as JSON).
        needs_head: the task evaluates a trained head (``--head``), not the bare model: without one it is
            left out of 'all' with a note, and refused when named.
        options: the dataclass of its own options (fields made by ``options.option``); ``run`` gets an instance.
        head_role: the kind of ``--head`` it uses (a role of ``heads.expect.ROLES``), ``NO_HEAD`` when it uses
            none; checked before any model loads, so a head no task can use is refused instead of ignored
            (undeclared, "": not checked).
    """

    name: str
    needs: frozenset[str]
    run: TaskFn
    summary: str = ""
    report: Callable[[dict], list[str]] | None = None
    needs_head: bool = False
    options: type = NoOptions
    head_role: str = ""

    def build_options(self, values: Any = None, label: Callable[[str], str] | None = None) -> Any:
        """This task's options from a mapping (or an instance, re-checked), each value checked as declared."""
        if isinstance(values, self.options):
            values = {f.name: getattr(values, f.name) for f in dataclasses.fields(values)}
        elif values is not None and not isinstance(values, Mapping):
            raise ConfigError(f"options of task {self.name!r}: expected a mapping or {self.options.__name__}, "
                              f"got {type(values).__name__}")
        return build_options(self.options, values, label or (lambda key: f"--task-arg {self.name}.{key}"))

    def describe_options(self) -> list[tuple[str, str]]:
        """('task.key', 'type, default: help') per option, for ``--help``."""
        return describe(self.options, f"{self.name}.")


#: ``head_role`` of a task that evaluates the bare model and uses no head
NO_HEAD = "none"

#: name -> task, in registration order (the order ``--tasks all`` runs them).
EVAL_TASKS: dict[str, EvalTask] = {}


def add_task(task: EvalTask) -> EvalTask:
    """Register ``task``; a second task under the same name is a programming error."""
    unknown = sorted(task.needs - set(FIELDS) - {IMAGE})
    if unknown:
        raise ValueError(f"evaluation task {task.name!r}: unknown Sample fields {unknown}; expected some of "
                         f"{FIELDS} or {IMAGE!r}")
    if task.name == "all" or not task.name or "," in task.name or "." in task.name:
        raise ValueError(f"evaluation task name {task.name!r}: reserved or not a plain name")
    if not dataclasses.is_dataclass(task.options):
        raise ValueError(f"evaluation task {task.name!r}: options must be a dataclass")
    if task.name in EVAL_TASKS and EVAL_TASKS[task.name] is not task:
        raise ValueError(f"evaluation task {task.name!r} is already registered")
    EVAL_TASKS[task.name] = task
    return task


def register_task(name: str, needs: Iterable[str], summary: str = "",
                  report: Callable[[dict], list[str]] | None = None,
                  needs_head: bool = False, options: type = NoOptions,
                  head_role: str = "") -> Callable[[TaskFn], TaskFn]:
    """Decorator: register the decorated function as task ``name`` needing the Sample fields ``needs``, with
    its options declared by the dataclass ``options`` and the kind of head it uses by ``head_role``."""
    def wrap(run: TaskFn) -> TaskFn:
        add_task(EvalTask(name, frozenset(needs), run, summary, report, needs_head, options, head_role))
        return run
    return wrap


def task_names(tasks: str | Sequence[str]) -> list[str]:
    """'all', 'a,b' or a list -> the names as written (not yet validated)."""
    return [t.strip() for t in (tasks.split(",") if isinstance(tasks, str) else tasks) if t.strip()]


def resolve_tasks(tasks: str | Sequence[str]) -> tuple[str, ...]:
    """'all', 'a,b' or a list -> validated task names in registration order ('all': every registered task)."""
    names = task_names(tasks)
    if names == ["all"]:
        return tuple(EVAL_TASKS)
    unknown = [t for t in names if t not in EVAL_TASKS]
    if unknown or not names:
        raise ConfigError(f"--tasks: unknown {unknown or names}, expected 'all' or some of {list(EVAL_TASKS)}")
    return tuple(t for t in EVAL_TASKS if t in names)


def parse_task_args(items: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """{'task.key': value} (``--task-arg``, already split at '=') -> {task: {key: value}}; an unknown task or
    a key without its task is one line naming it (keys and values are checked by ``EvalTask.build_options``)."""
    out: dict[str, dict[str, Any]] = {}
    for dotted, value in items.items():
        task, sep, key = dotted.partition(".")
        if not sep or not task or not key:
            raise ConfigError(f"--task-arg {dotted}={value}: expected TASK.KEY=VALUE (e.g. segmentation.window=224)")
        if task not in EVAL_TASKS:
            raise ConfigError(f"--task-arg {dotted}: unknown task {task!r}, expected one of {', '.join(EVAL_TASKS)}")
        out.setdefault(task, {})[key] = value
    return out
