"""One call from a TrainConfig to a finished run dir: model, objective, data, engine, cleanup."""
from __future__ import annotations

import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

import torch
import yaml

from ..config import save_config
from ..data.readers import DataInfo
from ..data.sample import Sample
from ..data.skips import SKIP_LOG, SkipCounter, SkipLog
from ..data.spec import DataSpec, parse_data
from ..errors import ConfigError, DataError
from ..models import load_model, model_config
from ..models.weights import is_random_init
from ..objectives import build_objective, objective_class, objective_options
from ..objectives.base import Objective
from . import checkpoint as ckpt
from .config import TrainConfig
from .data import BatchStream, PrefetchedBatches
from .distributed import DistInfo, any_rank, cleanup, init_distributed, resolve_device
from .engine import Evaluator, Hook, Trainer, TrainResult
from .lock import RunLock, describe_holder
from .sources import open_training_source, source_info

Source = Iterable[Sample]
#: ``(loaded bundle) -> evaluator or None``: how a caller (the CLI) hands a run its periodic evaluation
EvaluatorFactory = Callable[[Any], Optional[Evaluator]]


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


def run_training(config: TrainConfig, source: Source | None = None, make_evaluator: EvaluatorFactory | None = None,
                 hooks: Sequence[Hook] = (), info: DataInfo | None = None, bundle: Any = None) -> TrainResult:
    """Train ``config.objective`` on ``source`` (or on ``--data``, opened once) into the run folder.

    Args:
        config: the run configuration (``config.validate`` is applied).
        source: decoded Samples for this rank (tests, in-memory data); None: ``config.data`` is opened once,
            by the reader that fills what the objective needs.
        make_evaluator: ``(loaded bundle) -> evaluator or None``, for runs that export a CLIP model: the
            evaluator ``(model, step) -> metrics`` runs every ``eval_every`` steps and at the end (the CLI
            passes the world's zero-shot + retrieval). A run that trains a head says once that it is not used.
        hooks: ``(step, trainer)`` callables after each step.
        info: what ``source`` says of itself (classes, thing/stuff, novel classes); default: read from its
            ``classes`` / ``isthing`` attributes.
        bundle: the model already loaded from ``config.model`` / ``config.pretrained`` (the few-shot protocol
            holds it, possibly built in memory); default: loaded here.
    """
    device = resolve_device(config.device)
    info_dist: DistInfo = init_distributed(device.type)
    lock: RunLock | None = None
    try:
        config.validate(info_dist.world_size)
        options = objective_options(config.objective, config.objective_args)   # bad options fail before any data
        if device.type == "cuda":
            device = resolve_device(f"cuda:{info_dist.local_rank}" if device.index is None else str(device))
        run_dir = run_dir_of(config)
        lock = lock_run_dir(run_dir, config, info_dist, device)
        resume_from = check_run_dir(config, run_dir)       # a wrong run folder is named before the data
        spec = parse_data(config.data or "") if source is None else None             # the one parse of --data
        plan = _Plan(config, run_dir, resume_from, device, info_dist, options)
        return _train(plan, _open(plan, spec, source, info), make_evaluator, hooks, bundle)
    finally:
        if lock is not None:
            lock.release()
        cleanup()


@dataclass(frozen=True)
class _Plan:
    """A run whose folder is locked and checked, with its validated objective options."""

    config: TrainConfig
    run_dir: Path
    resume_from: Path | None
    device: torch.device
    dist: DistInfo
    options: Any


def _open(plan: _Plan, spec: DataSpec | None, source: Source | None,
          info: DataInfo | None) -> tuple[Source, DataInfo]:
    """The training source and what it says of itself: ``--data`` opened once for this rank."""
    cls = objective_class(plan.config.objective)
    if source is None:
        needs = cls.required_fields(plan.options)
        return open_training_source(plan.config, spec, plan.dist.rank, plan.dist.world_size, needs,
                                    cls.describe_requirement(plan.options))
    return source, info or source_info(source)


def _train(plan: _Plan, opened: tuple[Source, DataInfo], make_evaluator: EvaluatorFactory | None,
           hooks: Sequence[Hook], given: Any = None) -> TrainResult:
    """Model, objective, batches and engine of a run whose folder is locked and whose data is open."""
    config, (source, data_info) = plan.config, opened
    batches: BatchStream | PrefetchedBatches | None = None
    try:
        check_data_size(source, config)
        torch.manual_seed(config.seed)
        random.seed(config.seed)
        bundle = given or load_model(config.model, pretrained=config.pretrained, device="cpu")
        bundle.model.train()
        objective = build_objective(config.objective, bundle, plan.options, data_info, total_steps=config.steps)
        objective.lock_blocks(config.lock_image_blocks, config.lock_text_blocks)
        transform = objective.sample_transform()
        if transform is None:
            raise ConfigError(f"objective {config.objective!r} needs its own data pipeline, not `clipdense train`")
        prefetch, threads = config.loader_threads(plan.device.type)
        batches = BatchStream(source, transform, config.micro_batch_size(plan.dist.world_size), seed=config.seed,
                              rank=plan.dist.rank, world_size=plan.dist.world_size, collate=objective.collate,
                              augment_threads=threads)
        if prefetch > 0:
            batches = PrefetchedBatches(batches, depth=prefetch, pin_memory=plan.device.type == "cuda")
        if plan.dist.is_main:
            save_config(config, plan.run_dir / "config.yaml")
        skips = getattr(source, "skips", None)
        if isinstance(skips, SkipCounter):   # every rank and decode worker names the files it skips
            skips.log = SkipLog(plan.run_dir / SKIP_LOG)
        evaluator = _evaluator(config, objective, bundle, make_evaluator, plan.dist.is_main)
        if plan.dist.is_main and plan.resume_from is None and is_random_init(config.model, config.pretrained):
            warn(f"{config.model} starts from random weights (no --pretrained): right for pretraining from "
                 "scratch, meaningless for distilling or training heads")
        trainer = Trainer(config, objective, batches, plan.run_dir, bundle.name,
                          _export_config(bundle.name, bundle.model), device=plan.device, dist_info=plan.dist,
                          evaluator=evaluator, hooks=hooks)
        return trainer.fit(plan.resume_from)
    finally:
        if isinstance(batches, PrefetchedBatches):
            batches.close()


def _evaluator(config: TrainConfig, objective: Objective, bundle: Any, make_evaluator: EvaluatorFactory | None,
               main: bool) -> Evaluator | None:
    """The periodic evaluator of a run that exports a CLIP; a head run says once that ``--eval-every`` /
    ``--val-data`` do not act on it."""
    if objective.exported_head() is not None:
        if main and (config.eval_every or config.val_data):
            warn(f"--eval-every / --val-data: objective {config.objective!r} trains a head, which periodic "
                 "evaluation does not score; evaluate it after training with `clipdense eval --head RUN`")
        return None
    return make_evaluator(bundle) if make_evaluator is not None else None
