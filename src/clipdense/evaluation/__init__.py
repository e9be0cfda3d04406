"""clipdense.evaluation: metrics, task evaluators (which take encode functions), the task registry, the
runner and reports.

Each task module registers itself on import (``registry.register_task``); a new task is one more module
imported here.
"""
from . import metrics
from .registry import EVAL_TASKS, EvalTask, add_task, register_task, resolve_tasks
from .zeroshot import zeroshot_classification
from .retrieval import retrieval
from .segmentation import segmentation_both, segmentation_with_background, semantic_segmentation
from .regions import METHODS as REGION_METHODS, RegionBatch, region_classification
from .detection import box_ap, evaluate_detector
from .context import EvalContext, EvalSettings
from .inputs import EvalData, open_eval_data
from .report import json_ready, to_markdown, write_results
from .runner import EvalPlan, evaluate, plan_tasks, resolve_modes

__all__ = [
    "EVAL_TASKS", "EvalContext", "EvalData", "EvalPlan", "EvalSettings", "EvalTask", "REGION_METHODS",
    "RegionBatch", "add_task", "box_ap", "evaluate_detector", "evaluate", "json_ready", "metrics", "open_eval_data", "plan_tasks",
    "region_classification", "register_task", "resolve_modes", "resolve_tasks", "retrieval", "segmentation_both",
    "segmentation_with_background", "semantic_segmentation", "to_markdown", "write_results",
    "zeroshot_classification",
]
