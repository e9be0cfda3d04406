"""One call from a TrainConfig to a finished run dir: model, objective, data, engine, cleanup."""
from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
import yaml

from ..config import save_config
from ..data.sample import Sample
from ..data.skips import SKIP_LOG, SkipCounter, SkipLog
from ..data.spec import parse_data
from ..errors import ConfigError, DataError
from ..models import load_model, model_config
from ..models.weights import is_random_init
from ..objectives import build_objective
from . import checkpoint as ckpt
from .config import TrainConfig
from .data import BatchStream, PrefetchedBatches
from .distributed import DistInfo, any_rank, cleanup, init_distributed, resolve_device
from .engine import Evaluator, Hook, Trainer, TrainResult
from .lock import RunLock, describe_holder

Source = Iterable[Sample]


def run_dir_of(config: TrainConfig) -> Path:
    """The folder a run writes into: --out, or the resumed run itself."""
    if config.resume:
        return Path(config.out or config.resume)
    if not config.out:
        raise ConfigError("--out RUN_DIR is required (where checkpoints and metrics go)")
    return Path(config.out)


def holds_run(folder: Path) -> bool:
    """Whether ``folder`` already has a run's files in it."""
    return any((folder / name).exists() for name in ("config.yaml", "metrics.jsonl", "checkpoints"))


def check_run_dir(config: TrainConfig, run_dir: Path) -> Path | None:
    """The checkpoint to continue from (None for a new run); refuses to overwrite or mix runs.

    Called with the folder's lock held, so what it sees cannot change under it.
    """
    if not config.resume:
        if ckpt.latest_checkpoint(run_dir) is not None:
            raise ConfigError(f"--out {run_dir} already holds checkpoints; continue it with --resume {run_dir} "
                              "or choose another --out")
        return None
    resume = Path(config.resume)
    if not resume.is_dir():
        raise ConfigError(f"--resume {resume}: no such run folder")
    latest = ckpt.latest_checkpoint(resume)
    if latest is None:
        raise ConfigError(f"--resume {resume}: no checkpoint found in {resume}/checkpoints")
    _check_same_model(resume, config)
    if run_dir.resolve() != resume.resolve() and holds_run(run_dir):
        raise ConfigError(f"--out {run_dir}: already holds a run; continuing {resume} there would mix the two "
                          f"(continue that one with --resume {run_dir}, or choose an empty --out)")
    return latest[1]


def resolve_run_dir(config: TrainConfig) -> tuple[Path, Path | None]:
    """(run dir, checkpoint to resume from), for callers that do not hold the lock (checks only)."""
    run_dir = run_dir_of(config)
    return run_dir, check_run_dir(config, run_dir)


def lock_run_dir(run_dir: Path, config: TrainConfig, info: DistInfo, device: torch.device) -> RunLock | None:
    """Rank 0 locks the run folder; every rank fails together when it is taken."""
    lock, error = None, None
    if info.is_main:
        try:
            resumed_in_place = config.resume and run_dir.resolve() == Path(config.resume).resolve()
            lock = RunLock(run_dir, "--resume" if resumed_in_place else "--out").acquire()
        except ConfigError as exc:
            error = exc
    if any_rank(error is not None, device):
        raise error or ConfigError(f"{run_dir}: the run folder is in use (rank 0 could not lock it)")
    if lock is not None and lock.stale:
        warn(f"{run_dir}: took over the lock of a run that ended without releasing it "
             f"({describe_holder(lock.stale)}, no longer running)")
    return lock


def warn(message: str) -> None:
    """One warning line on stderr (above any progress bar, which is not drawn yet)."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


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
    lock: RunLock | None = None
    try:
        config.validate(info.world_size)
        if device.type == "cuda":
            device = resolve_device(f"cuda:{info.local_rank}" if device.index is None else str(device))
        run_dir = run_dir_of(config)
        lock = lock_run_dir(run_dir, config, info, device)
        resume_from = check_run_dir(config, run_dir)
        if source is None:
            parse_data(config.data)   # a missing or malformed --data fails before any model is loaded
        return _train(config, run_dir, resume_from, device, info, source, evaluator, hooks, open_source,
                      evaluate_on_world)
    finally:
        if lock is not None:
            lock.release()
        cleanup()


def _train(config: TrainConfig, run_dir: Path, resume_from: Path | None, device: torch.device, info: DistInfo,
           source: Source | None, evaluator: Evaluator | None, hooks: Sequence[Hook], open_source: Any,
           evaluate_on_world: bool) -> TrainResult:
    """Model, objective, data and engine of a run whose folder is locked and checked."""
    batches: BatchStream | PrefetchedBatches | None = None
    try:
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
            save_config(config, run_dir / "config.yaml")
        skips = getattr(source, "skips", None)
        if isinstance(skips, SkipCounter):   # every rank and decode worker names the files it skips
            skips.log = SkipLog(run_dir / SKIP_LOG)
        if evaluator is None and evaluate_on_world and objective.exported_head() is None:   # CLIP models only
            from .sources import world_evaluator
            evaluator = world_evaluator(config, bundle.name, bundle.tokenizer, bundle.preprocess, device)
        if info.is_main and resume_from is None and is_random_init(config.model, config.pretrained):
            warn(f"{config.model} starts from random weights (no --pretrained): right for pretraining from "
                 "scratch, meaningless for distilling or training heads")
        trainer = Trainer(config, objective, batches, run_dir, bundle.name, _export_config(bundle.name, bundle.model),
                          device=device, dist_info=info, evaluator=evaluator, hooks=hooks)
        return trainer.fit(resume_from)
    finally:
        if isinstance(batches, PrefetchedBatches):
            batches.close()
