"""The training loop: batches -> objective -> losses -> backward -> optimiser step, and bookkeeping.

Read ``Trainer.fit`` top to bottom: everything a method needs beyond this loop lives in its
``Objective`` (losses, transforms, EMA teachers), everything about running lives here.
"""
from __future__ import annotations

import contextlib
import copy
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..errors import ClipDenseError, ConfigError
from ..models.weights import read_state_dict
from . import checkpoint as ckpt
from .config import TrainConfig
from .distributed import DistInfo, all_reduce_mean, any_rank, barrier
from .ema import WeightEMA
from .metrics import MetricsLog, progress_bar
from ..objectives.base import Objective
from .optim import build_optimizer, lr_at, set_lr

Evaluator = Callable[[nn.Module, int], Mapping[str, float]]
Hook = Callable[[int, "Trainer"], None]


@dataclass
class TrainResult:
    """What a finished run leaves behind."""

    run_dir: Path
    step: int
    last_losses: dict[str, float]
    skipped_steps: int
    corrupt_samples: int = 0      # unreadable samples the data source skipped (and counted)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``; None means plain fp32."""
    if precision == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("precision fp16 needs a CUDA device (use bf16 or fp32 on CPU)")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def _module_prefix(root: nn.Module, module: nn.Module) -> str | None:
    """The state-dict prefix of ``module`` inside ``root`` ('' for root itself, None if absent)."""
    for name, candidate in root.named_modules():
        if candidate is module:
            return name
    return None


class Trainer:
    """Runs one objective over a stream of batches, with checkpoints, resume and logging.

    Args:
        config: the run's TrainConfig (steps, lr, precision, checkpointing ...).
        objective: the method; its ``exported_model()`` is what checkpoints save (as a head file when
            ``exported_head()`` says it is a head, else as a CLIP model).
        batches: iterator of batches for this rank (micro-batch sized); if it has
            ``state_dict``/``load_state_dict`` its position is checkpointed.
        run_dir: where checkpoints and metrics go.
        model_name, model_config: written into the safetensors metadata (load_model reads them).
        device, dist_info: where this process runs.
        evaluator: ``(exported model, step) -> {name: value}``, run on rank 0.
        hooks: ``(step, trainer)`` callables after each step (custom logging, tests).
    """

    def __init__(self, config: TrainConfig, objective: Objective, batches: Any, run_dir: str | Path,
                 model_name: str, model_config: Mapping[str, Any] | None = None,
                 device: torch.device = torch.device("cpu"), dist_info: DistInfo = DistInfo(),
                 evaluator: Evaluator | None = None, hooks: Sequence[Hook] = ()) -> None:
        self.config, self.objective, self.batches = config, objective, batches
        self.run_dir, self.model_name, self.model_config = Path(run_dir), model_name, model_config
        self.device, self.dist, self.evaluator, self.hooks = device, dist_info, evaluator, list(hooks)
        self.step, self.skipped_steps = 0, 0
        # policy "stop": step number of the first non-finite step, kept on the device and read only at
        # log/checkpoint/eval boundaries, so a CUDA step never waits for the host (0 = none seen)
        self._first_bad_step = torch.zeros((), dtype=torch.long, device=device)
        self.amp_dtype = autocast_dtype(config.precision, device)
        exported = objective.exported_model()
        self.export = self._export_format(exported)
        if config.grad_checkpointing and hasattr(exported, "set_grad_checkpointing"):
            exported.set_grad_checkpointing(True)
        objective.to(device)
        self.params = [p for _, p in objective.named_trainable_parameters()]
        self.optimizer = build_optimizer(objective.named_trainable_parameters(), config.lr, config.weight_decay,
                                         (config.beta1, config.beta2), config.eps, device)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp_dtype == torch.float16)
        self.ema = WeightEMA(exported, config.ema_decay) if config.ema_decay > 0 else None
        self.module: nn.Module = objective
        if dist_info.enabled:
            self.module = DistributedDataParallel(
                objective, device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=getattr(objective, "ddp_find_unused_parameters", False))
        self.forward = torch.compile(self.module) if config.compile else self.module
        self.metrics: MetricsLog | None = None

    # ----------------------------------------------------------------------------------- loop
    def fit(self, resume_from: Path | None = None) -> TrainResult:
        """Train until ``config.steps`` optimiser steps are done (continuing a checkpoint if given)."""
        if resume_from is not None:
            self.load_checkpoint(resume_from)
        main = self.dist.is_main
        self.metrics = MetricsLog(self.run_dir, resume_step=self.step if resume_from else None, enabled=main)
        bar = progress_bar(self.config.steps, self.step, enabled=main)
        try:   # closed before any error is printed, so the bar cannot redraw over the message
            losses = self._loop(bar)
        finally:
            bar.close()
            self.metrics.close()
        return TrainResult(self.run_dir, self.step, losses, self.skipped_steps, self._corrupt_samples() or 0)

    def _loop(self, bar: Any) -> dict[str, float]:
        """The steps, with logging, checkpoints and evaluation at their intervals; the last logged losses."""
        cfg = self.config
        batches: Iterator[Any] = iter(self.batches)
        losses: dict[str, float] = {}
        tick, images_since = time.perf_counter(), 0
        self.objective.train()
        while self.step < cfg.steps:
            lr = lr_at(self.step, cfg.lr, cfg.warmup_steps, cfg.steps, cfg.min_lr_ratio)
            set_lr(self.optimizer, lr)
            step_losses, images = self._accumulate_gradients(batches)
            self.step += 1
            if step_losses is not None:                 # None: non-finite and skipped (policy "skip")
                self.objective.after_step(self.step)
                if self.ema is not None:
                    self.ema.update(self.objective.exported_model())
            images_since += images * self.dist.world_size
            bar.update(1)
            last = self.step == cfg.steps
            log_now = self.step % cfg.log_every == 0 or last
            save_now = self.step % cfg.checkpoint_every == 0 or last
            eval_now = self.evaluator is not None and (bool(cfg.eval_every and self.step % cfg.eval_every == 0) or last)
            if log_now or save_now or eval_now:        # the host looks at the run: first check it is sane
                self._stop_if_nonfinite()
            if step_losses is not None and log_now:
                losses = {k: float(all_reduce_mean(v)) for k, v in step_losses.items()}
                rate = images_since / max(1e-9, time.perf_counter() - tick)
                tick, images_since = time.perf_counter(), 0
                self._log(losses, lr, rate)
                shown = {k: f"{losses[k]:.2f}" for k in self.objective.progress_keys if k in losses}
                bar.set_postfix(loss=f"{losses['loss']:.4f}", **shown, lr=f"{lr:.2e}", img_s=f"{rate:.0f}")
            if save_now:
                self.save_checkpoint()
            if eval_now:
                self._evaluate()
            for hook in self.hooks:
                hook(self.step, self)
        return losses

    def _accumulate_gradients(self, batches: Iterator[Any]) -> tuple[dict[str, torch.Tensor] | None, int]:
        """Forward/backward ``accum_steps`` micro-batches and take one optimiser step.

        Returns the step's detached losses (summed over micro-batches / accum) and the image count,
        or (None, count) when a non-finite loss or gradient made the step be skipped.
        """
        accum, totals, images, bad = self.config.accum_steps, {}, 0, torch.zeros((), device=self.device)
        for micro in range(accum):
            batch = _to_device(next(batches), self.device)
            sync = micro == accum - 1 or not isinstance(self.module, DistributedDataParallel)
            with (contextlib.nullcontext() if sync else self.module.no_sync()), self._autocast():
                out = self.forward(batch)
            loss = out["loss"]
            bad = bad + (~torch.isfinite(loss.detach().float())).float()
            self.scaler.scale(loss / accum).backward()
            for key, value in out.items():
                totals[key] = totals.get(key, 0.0) + value.detach().float() / accum
            images += _batch_size(batch)
        self.scaler.unscale_(self.optimizer)
        max_norm = self.config.grad_clip if self.config.grad_clip > 0 else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, max_norm)
        if self.amp_dtype != torch.float16:             # with fp16 the scaler owns inf gradients
            bad = bad + (~torch.isfinite(grad_norm.detach().float())).float()
        if self.config.on_nonfinite == "stop":           # no host sync: checked at the next boundary
            seen = (bad > 0) & (self._first_bad_step == 0)
            self._first_bad_step = torch.where(seen, self.step + 1, self._first_bad_step)
        elif any_rank(bool(bad.item() > 0), self.device):
            self._skip_nonfinite()
            return None, images
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        totals["grad_norm"] = grad_norm.detach().float()
        return totals, images

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _skip_nonfinite(self) -> None:
        """Policy 'skip': drop this step's gradients; give up when too many steps were dropped."""
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.update()
        self.skipped_steps += 1
        if self.dist.is_main:
            self.metrics.log({"step": self.step + 1, "skipped_nonfinite": self.skipped_steps})
        if self.skipped_steps > max(10, self.config.steps // 10):
            raise ClipDenseError(f"{self.skipped_steps} steps skipped for a non-finite loss/gradient by step "
                                 f"{self.step + 1}: training diverged; {self._where_to_continue()}")

    def _stop_if_nonfinite(self) -> None:
        """Policy 'stop': raise, naming the first bad step and the last good checkpoint, if one was seen.

        Runs before anything is logged or saved, so no checkpoint ever holds the diverged weights.
        """
        none = torch.iinfo(torch.long).max
        first = torch.where(self._first_bad_step > 0, self._first_bad_step, none)
        if self.dist.enabled:
            dist.all_reduce(first, op=dist.ReduceOp.MIN)     # the earliest bad step on any rank
        bad_step = int(first.item())
        if bad_step == none:
            return
        raise ClipDenseError(f"non-finite loss/gradient at step {bad_step}; {self._where_to_continue()}, "
                             "or let such steps be skipped with --on-nonfinite skip")

    def _where_to_continue(self) -> str:
        """The last good checkpoint and how to continue from it, or that a fresh start is the only way."""
        last = ckpt.latest_checkpoint(self.run_dir)
        if last is None:
            return "no checkpoint was written yet: lower --lr and start again"
        return f"last good checkpoint {last[1]}: lower --lr and continue it with --resume {self.run_dir}"

    def _corrupt_samples(self) -> int | None:
        """How many unreadable samples the data source has skipped so far (None: it does not count)."""
        skipped = getattr(getattr(self.batches, "source", None), "skipped", None)
        return skipped if isinstance(skipped, int) else None

    def _log(self, losses: Mapping[str, float], lr: float, images_per_s: float) -> None:
        record: dict[str, Any] = {"step": self.step, "lr": lr, **losses, "images_per_s": round(images_per_s, 2)}
        skipped = self._corrupt_samples()
        if skipped is not None:
            record["corrupt_samples_skipped"] = skipped
        if self.skipped_steps:
            record["skipped_nonfinite"] = self.skipped_steps
        self.metrics.log(record)

    def _evaluate(self) -> None:
        if self.dist.is_main:
            model = self.objective.exported_model()
            model.eval()
            with torch.no_grad(), self._autocast():
                results = dict(self.evaluator(model, self.step))
            self.objective.train()
            self.metrics.log({"step": self.step, **{f"eval/{k}": v for k, v in results.items()}})
        barrier()

    # ---------------------------------------------------------------------------- checkpoints
    def _export_format(self, exported: nn.Module) -> ckpt.Export:
        """A CLIP model export (model.safetensors) unless the objective says it trains a head."""
        head = self.objective.exported_head()
        if head is None:
            return ckpt.model_export(self.model_name, self.model_config)
        if head.head is not exported:
            raise ConfigError(f"{type(self.objective).__name__}.exported_head() names a module that is not its "
                              "exported_model()")
        return ckpt.head_export(head.head, head.backbone)

    def _exported_prefix(self) -> str:
        prefix = _module_prefix(self.objective, self.objective.exported_model())
        if prefix is None:
            raise ConfigError(f"{type(self.objective).__name__}.exported_model() is not a submodule of it")
        return prefix

    def _saved_prefixes(self) -> tuple[str, ...]:
        """State-dict prefixes ``state.pt`` leaves out: the export (its own file) and the frozen modules."""
        prefixes = [self._exported_prefix()]
        for module in self.objective.frozen_modules():
            prefix = _module_prefix(self.objective, module)
            if prefix is None:
                raise ConfigError(f"{type(self.objective).__name__}.frozen_modules() names a module that is not "
                                  "a submodule of it")
            prefixes.append(prefix)
        return tuple(p + "." for p in prefixes if p)

    def _extra_state(self) -> dict[str, torch.Tensor]:
        """The objective's state outside the exported model and the frozen modules (heads, EMA teachers, centres)."""
        if self._exported_prefix() == "":
            return {}
        skip = self._saved_prefixes()
        return {k: v.detach().cpu() for k, v in self.objective.state_dict().items() if not k.startswith(skip)}

    def _data_state(self) -> list[Any]:
        state = self.batches.state_dict() if hasattr(self.batches, "state_dict") else {}
        if not self.dist.enabled:
            return [state]
        gathered: list[Any] = [None] * self.dist.world_size
        dist.all_gather_object(gathered, state)
        return gathered

    def save_checkpoint(self) -> None:
        """Write step-NNNNNNNN (rank 0) with everything needed to continue bit-exactly."""
        data_state = self._data_state()
        if self.dist.is_main:
            exported = self.objective.exported_model()
            ema_model = None
            if self.ema is not None:
                ema_model = self.ema.copy_to(copy.deepcopy(exported))
            state = {"step": self.step, "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
                     "ema": self.ema.state_dict() if self.ema else {}, "objective": self._extra_state(),
                     "rng": ckpt.capture_rng(), "data": data_state, "skipped_steps": self.skipped_steps,
                     "model_name": self.model_name, "objective_name": self.objective.name,
                     "world_size": self.dist.world_size}
            ckpt.save_checkpoint(self.run_dir, self.step, exported, self.export, state, ema_model=ema_model,
                                 keep=self.config.keep_checkpoints, metadata=self.objective.export_metadata())
        barrier()

    def load_checkpoint(self, path: Path) -> None:
        """Restore weights, optimiser, scaler, EMA, objective extras, RNG and data position."""
        state = ckpt.load_state(path)
        if state["model_name"] != self.model_name:
            raise ConfigError(f"cannot resume {path}: it trains model {state['model_name']!r}, "
                              f"this run is {self.model_name!r}")
        if state["objective_name"] != self.objective.name:
            raise ConfigError(f"cannot resume {path}: it was trained with objective {state['objective_name']!r}, "
                              f"this run uses {self.objective.name!r}")
        if state["world_size"] != self.dist.world_size:
            raise ConfigError(f"cannot resume {path} exactly: it ran on {state['world_size']} processes, "
                              f"this run has {self.dist.world_size}")
        if not (path / self.export.filename).is_file():
            raise ConfigError(f"cannot resume {path}: this run exports {self.export.filename}, the checkpoint "
                              f"holds {[p.name for p in path.glob('*.safetensors')]}")
        prefix = self._exported_prefix()
        weights = read_state_dict(path / self.export.filename)
        full = {(f"{prefix}.{k}" if prefix else k): v for k, v in weights.items()}
        frozen = tuple(p for p in self._saved_prefixes() if p != f"{prefix}.")
        full.update({k: v for k, v in self.objective.state_dict().items() if frozen and k.startswith(frozen)})
        full.update(state["objective"])
        self.objective.load_state_dict(full, strict=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None and state["ema"]:
            self.ema.load_state_dict(state["ema"])
        if hasattr(self.batches, "load_state_dict"):
            self.batches.load_state_dict(state["data"][self.dist.rank])
        ckpt.restore_rng(state["rng"])
        self.step, self.skipped_steps = int(state["step"]), int(state["skipped_steps"])


def _batch_size(batch: Any) -> int:
    """Images in a batch: the leading size of its first tensor."""
    if isinstance(batch, dict):
        batch = next(iter(batch.values()))
    if isinstance(batch, (list, tuple)):
        batch = batch[0]
    return int(batch.shape[0]) if isinstance(batch, torch.Tensor) else 0
