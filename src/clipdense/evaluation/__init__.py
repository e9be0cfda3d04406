"""clipdense.evaluation: metrics, task evaluators (which take encode functions), the task registry, the
runner and reports.

Modules import in one direction: ``common``, ``options`` < ``inputs`` < ``context`` < ``registry``,
``region_methods`` < the task modules (``zeroshot``, ``retrieval``, ``segmentation``, ``regions``, ``detection``)
< ``report``, ``runner``. Each task module registers itself on import (``registry.register_task``, with its
options dataclass); a new task is one more module imported here.
"""
from . import metrics
from .options import build_options, option
from .inputs import EvalData, open_eval_data
from .context import EvalContext, EvalSettings, resolve_modes
from .registry import EVAL_TASKS, EvalTask, NoOptions, add_task, parse_task_args, register_task, resolve_tasks
from .region_methods import (REGION_METHODS, RegionBatch, RegionEncoders, RegionMethod, register_region_method,
                             resolve_region_methods)
from .zeroshot import zeroshot_classification
from .retrieval import retrieval
from .segmentation import (Feed, SegmentationOptions, segmentation_both, segmentation_with_background,
                           semantic_segmentation)
from .regions import RegionOptions, region_classification
from .detection import box_ap, evaluate_detector
from .grounding import evaluate_grounding, phrase_recall   # registers grounding (Flickr30k R@k)
from .vqa import evaluate_vqa, vqa_accuracy   # registers vqa (VQAv2 accuracy of a GLIPv2 head's VQA part)
from . import audio as _audio   # registers audio-zeroshot, audio-retrieval, audio-linear-probe
from .depth import depth_errors, depth_metrics   # registers depth, points-zeroshot
from .panoptic import PanopticOptions, evaluate_panoptic   # registers panoptic (PQ, mIoU, mask AP)
from .lvis_ap import evaluate_lvis, lvis_ap   # registers lvis (LVIS's federated AP, the lvis API)
from . import video as _video   # registers video-retrieval, action
from .report import json_ready, to_markdown, write_results
from .runner import EvalPlan, build_settings, build_task_options, evaluate, plan_tasks

__all__ = [
    "EVAL_TASKS", "EvalContext", "EvalData", "EvalPlan", "EvalSettings", "EvalTask", "Feed", "NoOptions",
    "REGION_METHODS", "RegionBatch", "RegionEncoders", "RegionMethod", "RegionOptions", "SegmentationOptions",
    "add_task", "box_ap", "build_options", "build_settings", "build_task_options", "evaluate", "evaluate_detector",
    "evaluate_lvis", "lvis_ap", "PanopticOptions", "evaluate_panoptic",
    "json_ready", "metrics", "open_eval_data", "option", "parse_task_args", "plan_tasks", "region_classification",
    "register_region_method", "register_task", "resolve_modes", "resolve_region_methods", "resolve_tasks",
    "retrieval", "segmentation_both", "segmentation_with_background", "semantic_segmentation", "to_markdown",
    "write_results", "zeroshot_classification",
]
