"""`clipdense eval`: the registered benchmark tasks on a world or a real dataset -> Markdown + JSON.

Flags are generated from the declarations: one per ``EvalSettings`` field (what every task shares), one per task
option that declares a flag users know (``--window``, ``--bg-threshold``, ``--region-methods``, ``--crops``), and
``--task-arg TASK.KEY=VALUE`` for any option of any task. Values are checked by the evaluation's one checker.
"""
from __future__ import annotations

import argparse
import dataclasses
from typing import Any, Callable

from .common import add_cache_flag, add_model_args, check_out_file, check_templates, load_cli_model, \
    parse_key_values, warn
from .outputs import check_beside

#: where the command differs from the library's defaults: a person at a terminal sees progress bars
CLI_DEFAULTS: dict[str, Any] = {"show_progress": True}


def _shown(value: Any) -> str:
    return ",".join(value) if isinstance(value, tuple) else "none" if value is None else str(value)


def _add_flag(parser: argparse.ArgumentParser, field: dataclasses.Field, dest: str, default: Any) -> None:
    """One flag from an option field: raw text in, checked later by ``build_options`` under the flag's name."""
    help_text = field.metadata.get("help", "")
    if "default" not in help_text:
        help_text += f" (default: {'on' if default is True else 'off' if default is False else _shown(default)})"
    if field.type in (bool, "bool"):
        parser.add_argument(field.metadata["flag"], dest=dest, default=None, action=argparse.BooleanOptionalAction,
                            help=help_text.replace("%", "%%"))
    else:
        action = parser.add_argument(field.metadata["flag"], dest=dest, default=None, metavar=field.name.upper(),
                                     help=help_text.replace("%", "%%"))
        action.option_field = field   # its declared bounds / choices, for the generated out-of-range flag test


def _task_flags() -> list[tuple[str, dataclasses.Field]]:
    """(task name, field) of every registered task option that declares a flag."""
    from ..evaluation import EVAL_TASKS
    return [(name, f) for name, task in EVAL_TASKS.items() for f in dataclasses.fields(task.options)
            if f.metadata.get("flag")]


def _epilog() -> str:
    from ..evaluation import EVAL_TASKS
    lines = ["task options (--task-arg TASK.KEY=VALUE, repeatable):"]
    for task in EVAL_TASKS.values():
        for name, text in task.describe_options():
            lines.append(f"  {name}: {text}")
    return "\n".join(lines)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `eval` to the command line."""
    from ..evaluation import EVAL_TASKS, EvalSettings
    parser = subparsers.add_parser("eval", help="zero-shot, retrieval, segmentation and region benchmarks",
                                   epilog=_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(parser)
    parser.add_argument("--data", required=True,
                        help="a world folder (clipdense data synth), an open_clip CSV, tar shards, "
                             "coco:images=DIR,annotations=FILE[,stuff=FILE], "
                             "semseg:images=DIR,labels=DIR,classes=FILE[,reduce_zero_label=true,ignore_index=255], "
                             "imagefolder:root=DIR, or a data YAML with format: and those keys")
    parser.add_argument("--tasks", default="all",
                        help="'all' (every task the data can feed; the others are noted as not run) or a comma list "
                             "of: " + "; ".join(f"{t.name} ({t.summary})" for t in EVAL_TASKS.values()))
    for field in dataclasses.fields(EvalSettings):
        if field.metadata.get("flag"):
            _add_flag(parser, field, f"setting_{field.name}", CLI_DEFAULTS.get(field.name, field.default))
    for task, field in _task_flags():
        _add_flag(parser, field, f"task_{task}_{field.name}", field.default)
    parser.add_argument("--task-arg", action="append", default=[], metavar="TASK.KEY=VALUE",
                        help="an option of one task (e.g. segmentation.window=224, regions.thing_expand=1.2); "
                             "repeatable, wins over the flags above; the options are listed below")
    parser.add_argument("--out", default=None,
                        help="write results JSON here and a .md beside it (default: print only)")
    parser.add_argument("--head", default=None,
                        help="a trained head (file or run dir) for the tasks that evaluate one: detection, and "
                             "segmentation with a Cat-Seg / LSeg head (beside the dense modes, at the head's "
                             "training size, with seen / unseen mIoU) (--model/--pretrained: the backbone it was "
                             "trained on)")
    add_cache_flag(parser)
    parser.set_defaults(func=run_eval)


def eval_options(args: argparse.Namespace) -> tuple[Any, dict[str, dict[str, Any]], Callable[[str, str], str]]:
    """(settings, raw task options, how each task option was named) from the flags; settings checked here."""
    from ..evaluation import EvalSettings, build_settings, parse_task_args
    flags = {f.name: f.metadata["flag"] for f in dataclasses.fields(EvalSettings) if f.metadata.get("flag")}
    given = {name: getattr(args, f"setting_{name}") for name in flags}
    values = {**CLI_DEFAULTS, "device": args.device, **{k: v for k, v in given.items() if v is not None}}
    settings = build_settings(EvalSettings(), values, lambda key: flags.get(key, f"--{key.replace('_', '-')}"))
    options: dict[str, dict[str, Any]] = {}
    named: dict[tuple[str, str], str] = {}
    for task, field in _task_flags():
        value = getattr(args, f"task_{task}_{field.name}")
        named[(task, field.name)] = field.metadata["flag"]
        if value is not None:
            options.setdefault(task, {})[field.name] = value
    for task, values in parse_task_args(parse_key_values(args.task_arg, "--task-arg")).items():
        for key, value in values.items():
            options.setdefault(task, {})[key] = value
            named[(task, key)] = f"--task-arg {task}.{key}"
    return settings, options, lambda task, key: named.get((task, key), f"--task-arg {task}.{key}")


def run_eval(args: argparse.Namespace) -> int:
    """Check every flag and option, load the model, run the tasks, print the Markdown table, write JSON + Markdown."""
    from ..evaluation import build_task_options, evaluate, plan_tasks, to_markdown, write_results

    if args.out is not None:
        out = check_out_file(args.out, suffixes=(".json",))
        check_beside("--out", out, [out, out.with_suffix(".md")])   # the Markdown goes beside it
    settings, raw, label = eval_options(args)
    check_templates(settings.templates)
    plan = plan_tasks(args.data, args.tasks, settings.split, args.head)   # before loading a model
    options = build_task_options(plan.tasks, raw, label)
    bundle = load_cli_model(args)
    results = evaluate(bundle, args.data, tasks=args.tasks, settings=settings, task_options=options, head=args.head)
    print(to_markdown(results), end="")
    if results.get("skipped_images"):
        names = results.get("skipped_examples") or []
        warn(args, f"skipped {results['skipped_images']} unreadable image(s): " + "; ".join(names[:20]) +
             (f"; ... ({len(names) - 20} more in the results JSON)" if len(names) > 20 else ""))
    if args.out is not None:
        json_path, md_path = write_results(results, args.out)
        print(f"\nwrote {json_path} and {md_path}")
    return 0
