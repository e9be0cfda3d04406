"""One call from a TrainConfig to a finished run dir: model, objective, data, engine, cleanup."""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
import yaml
from ..config import save_config
from ..errors import ConfigError, DataError
from ..models import load_model, model_config
from ..data.sample import Sample
from ..objectives import build_objective
from . import checkpoint as ckpt
from .config import TrainConfig
from .data import BatchStream, PrefetchedBatches
from .distributed import DistInfo, cleanup, init_distributed, resolve_device
from .engine import Evaluator, Hook, Trainer, TrainResult

Source = Iterable[Sample]


def resolve_run_dir(config: TrainConfig) -> tuple[Path, Path | None]:
    """(run dir, checkpoint to resume from). Refuses to silently overwrite or mix runs."""
    if config.resume:
        run_dir = Path(config.out or config.resume)
        latest = ckpt.latest_checkpoint(config.resume)
        if latest is None:
            raise ConfigError(f"--resume {config.resume}: no checkpoint found in {config.resume}/checkpoints")
        _check_same_model(Path(config.resume), config)
        return run_dir, latest[1]
    if not config.out:
        raise ConfigError("--out RUN_DIR is required (where checkpoints and metrics go)")
    run_dir = Path(config.out)
    if ckpt.latest_checkpoint(run_dir) is not None:
        raise ConfigError(f"--out {run_dir} already holds checkpoints; continue it with --resume {run_dir} "
                          "or choose another --out")
    return run_dir, None


def _check_same_model(resume_dir: Path, config: TrainConfig) -> None:
    """A run can only be continued with the model and objective it started with."""
    saved_path = resume_dir / "config.yaml"
    if not saved_path.is_file():
        return
    saved = yaml.safe_load(saved_path.read_text()) or {}
    for key in ("model", "objective"):
        if saved.get(key) not in (None, getattr(config, key)):
            raise ConfigError(f"--resume {resume_dir}: that run trains {key} {saved[key]!r}, "
                              f"not {getattr(config, key)!r}")


def _export_config(name: str, model: torch.nn.Module) -> dict[str, Any] | None:
    """open_clip config to store in checkpoints; records a logit bias the objective added (siglip)."""
    cfg = model_config(name)
    if cfg is not None and getattr(model, "logit_bias", None) is not None:
        cfg = {**cfg, "init_logit_bias": float(model.logit_bias.detach().reshape(-1)[0])}
    return cfg


def check_data_size(source: Source, config: TrainConfig) -> None:
    """A global batch larger than the whole dataset is a mistake (repeats samples within a batch)."""
    size = getattr(source, "num_samples", None)
    if size is None and hasattr(source, "__len__"):
        size = len(source)  # type: ignore[arg-type]
    if size is not None and config.batch_size > size:
        raise DataError(f"--batch-size {config.batch_size} is larger than the training data ({size} samples)")


def run_training(config: TrainConfig, source: Source | None = None, evaluator: Evaluator | None = None,
                 hooks: Sequence[Hook] = (), open_source: Any = None, evaluate_on_world: bool = False
                 ) -> TrainResult:
    """Train ``config.objective`` on ``source`` (or the reader ``open_source(config, rank, world)``).

    Args:
        config: the run configuration (``config.validate`` is applied).
        source: decoded Samples for this rank; if None, ``open_source`` builds it.
        evaluator: optional periodic evaluation ``(model, step) -> metrics``.
        hooks: ``(step, trainer)`` callables after each step.
        open_source: ``(config, rank, world_size, needed fields, who) -> source`` used when ``source`` is
            None (the CLI passes ``sources.open_training_source``).
        evaluate_on_world: without an ``evaluator``, for a run that trains a CLIP model (not a head), run
            zero-shot + retrieval on the world's val split (``val_data`` or ``data``) every ``eval_every``
            steps and at the end.
    """
    device = resolve_device(config.device)
    info: DistInfo = init_distributed(device.type)
    batches: BatchStream | PrefetchedBatches | None = None
    try:
        config.validate(info.world_size)
        run_dir, resume_from = resolve_run_dir(config)
        if device.type == "cuda":
            device = resolve_device(f"cuda:{info.local_rank}" if device.index is None else str(device))
        torch.manual_seed(config.seed)
        random.seed(config.seed)
        bundle = load_model(config.model, pretrained=config.pretrained, device="cpu")
        bundle.model.train()
        objective = build_objective(config.objective, bundle.model, bundle.tokenizer, config.objective_args,
                                    total_steps=config.steps)
        transform = objective.sample_transform()
        if transform is None:
            raise ConfigError(f"objective {config.objective!r} needs its own data pipeline, not `clipdense train`")
        if source is None:
            if open_source is None:
                raise ConfigError("no training data: pass --data")
            source = open_source(config, info.rank, info.world_size, objective.required_fields(),
                                 objective.describe_requirement())
        check_data_size(source, config)
        objective.prepare(bundle, source, config.data or None)
        prefetch, threads = config.loader_threads(device.type)
        batches = BatchStream(source, transform, config.micro_batch_size(info.world_size), seed=config.seed,
                              rank=info.rank, world_size=info.world_size, collate=objective.collate,
                              augment_threads=threads)
        if prefetch > 0:
            batches = PrefetchedBatches(batches, depth=prefetch, pin_memory=device.type == "cuda")
        if info.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            save_config(config, run_dir / "config.yaml")
        if evaluator is None and evaluate_on_world and objective.exported_head() is None:   # CLIP models only
            from .sources import world_evaluator
            evaluator = world_evaluator(config, bundle.name, bundle.tokenizer, bundle.preprocess, device)
        trainer = Trainer(config, objective, batches, run_dir, bundle.name, _export_config(bundle.name, bundle.model),
                          device=device, dist_info=info, evaluator=evaluator, hooks=hooks)
        return trainer.fit(resume_from)
    finally:
        if isinstance(batches, PrefetchedBatches):
            batches.close()
        cleanup()
