"""Evaluation tasks by name: each declares the Sample fields its data must carry and how it runs.

A task module registers itself with ``@register_task``; the runner picks the tasks ``--tasks`` names,
checks that ``--data`` can feed them (``clipdense.data.resolve_reader``), opens the matching reader and
calls the task with an ``EvalContext`` (the model as encode functions, the settings) and that reader.
Adding a task (detection next) is one module that registers itself, imported by ``evaluation/__init__``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from ..data.sample import FIELDS
from ..errors import ConfigError

if TYPE_CHECKING:
    from .context import EvalContext

#: (context, reader) -> (JSON-ready result, images processed); the reader fills the task's ``needs``.
TaskFn = Callable[["EvalContext", Any], "tuple[dict, int]"]


@dataclass(frozen=True)
class EvalTask:
    """A registered benchmark task.

    Args:
        name: what ``--tasks`` calls it and the key of its result in ``results["tasks"]``.
        needs: Sample fields its reader must fill (``clipdense.data.sample.FIELDS``).
        run: the task itself.
        summary: one line for help texts.
        report: result -> Markdown lines of its section in ``to_markdown`` (the built-in tasks have their
            tables in ``report.py``; without either, the section shows the result as JSON).
        needs_head: the task evaluates a trained head (``--head``), not the bare model: without one it is
            left out of 'all' with a note, and refused when named.
    """

    name: str
    needs: frozenset[str]
    run: TaskFn
    summary: str = ""
    report: Callable[[dict], list[str]] | None = None
    needs_head: bool = False


#: name -> task, in registration order (the order ``--tasks all`` runs them).
EVAL_TASKS: dict[str, EvalTask] = {}


def add_task(task: EvalTask) -> EvalTask:
    """Register ``task``; a second task under the same name is a programming error."""
    unknown = sorted(task.needs - set(FIELDS))
    if unknown:
        raise ValueError(f"evaluation task {task.name!r}: unknown Sample fields {unknown}; expected some of {FIELDS}")
    if task.name == "all" or not task.name or "," in task.name:
        raise ValueError(f"evaluation task name {task.name!r}: reserved or not a plain name")
    if task.name in EVAL_TASKS and EVAL_TASKS[task.name] is not task:
        raise ValueError(f"evaluation task {task.name!r} is already registered")
    EVAL_TASKS[task.name] = task
    return task


def register_task(name: str, needs: Iterable[str], summary: str = "",
                  report: Callable[[dict], list[str]] | None = None,
                  needs_head: bool = False) -> Callable[[TaskFn], TaskFn]:
    """Decorator: register the decorated function as task ``name`` needing the Sample fields ``needs``."""
    def wrap(run: TaskFn) -> TaskFn:
        add_task(EvalTask(name, frozenset(needs), run, summary, report, needs_head))
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
