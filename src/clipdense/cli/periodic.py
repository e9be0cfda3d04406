"""The evaluation `clipdense train` and `clipdense distill` hand the engine: zero-shot + retrieval on a world's
val split, for runs that export a CLIP (the engine itself knows no evaluator)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from ..data.world import is_world, open_world
from ..evaluation import evaluate
from ..models import Bundle
from ..train.config import TrainConfig
from ..train.distributed import resolve_device


def _numbers(tree: Any, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a nested result dict as 'a/b/c' keys."""
    out: dict[str, float] = {}
    if isinstance(tree, Mapping):
        for key, value in tree.items():
            out.update(_numbers(value, f"{prefix}/{key}" if prefix else str(key)))
    elif isinstance(tree, (int, float)) and not isinstance(tree, bool):
        out[prefix] = float(tree)
    return out


def world_evaluator(config: TrainConfig) -> Callable[[Bundle], Callable[[nn.Module, int], dict[str, float]] | None]:
    """``(loaded bundle) -> (model, step) -> metrics``: zero-shot + retrieval on the val split of ``--val-data``
    (or of ``--data`` when it is a world), each where the world wrote its val part; None when there is none."""
    def make(bundle: Bundle) -> Callable[[nn.Module, int], dict[str, float]] | None:
        val = config.val_data or config.data
        if not val or not is_world(Path(val)):
            return None
        split = open_world(val).split("val")
        tasks = tuple(name for name, present in (("zeroshot", split.classify_dir.is_dir()),
                                                 ("retrieval", split.csv.is_file())) if present)
        if not tasks:   # a world written without the val parts these tasks read
            return None
        device: torch.device = resolve_device(config.device)

        def run(model: nn.Module, step: int) -> dict[str, float]:
            size = model.visual.image_size
            current = Bundle(model, bundle.tokenizer, bundle.preprocess, bundle.name, None,
                             tuple(size) if isinstance(size, (tuple, list)) else (size, size))
            results = evaluate(current, val, tasks=tasks, device=str(device))
            return _numbers(results["tasks"])
        return run
    return make
