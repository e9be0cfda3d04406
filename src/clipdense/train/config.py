"""The one configuration dataclass of `clipdense train` (defaults, then YAML, then CLI flags)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..data.world.folder import is_world
from ..errors import ConfigError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
NONFINITE_POLICIES = ("stop", "skip")


def flag_of(name: str) -> str:
    """The command-line flag of a TrainConfig field (a YAML key of the same name sets it too)."""
    return "--" + name.replace("_", "-")


def _number(low: float, high: float = math.inf, low_open: bool = False, high_open: bool = False
            ) -> Callable[[Any], bool]:
    """A check that a value is a finite number in the interval (NaN and bools fail)."""
    def ok(value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            return False
        above = value > low if low_open else value >= low
        below = value < high if high_open else value <= high
        return above and below and math.isfinite(value)
    return ok


def _choice(options: tuple[str, ...]) -> Callable[[Any], bool]:
    return lambda value: value in options


#: (field, check, what is expected) for every TrainConfig value a user sets
_RULES: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    ("steps", _number(1), "a step count >= 1"),
    ("batch_size", _number(1), "images per step >= 1"),
    ("accum_steps", _number(1), "micro-batches per step >= 1"),
    ("lr", _number(0, low_open=True), "a learning rate > 0"),
    ("min_lr_ratio", _number(0, 1), "a fraction of --lr in [0, 1]"),
    ("warmup_steps", _number(0), "a step count >= 0"),
    ("weight_decay", _number(0), "a weight decay >= 0"),
    ("beta1", _number(0, 1, high_open=True), "a value in [0, 1)"),
    ("beta2", _number(0, 1, high_open=True), "a value in [0, 1)"),
    ("eps", _number(0, low_open=True), "a value > 0"),
    ("grad_clip", _number(0), "a max gradient norm >= 0 (0 = off)"),
    ("precision", _choice(PRECISIONS), f"one of {', '.join(PRECISIONS)}"),
    ("ema_decay", _number(0, 1, high_open=True), "a decay in [0, 1) (0 = off)"),
    ("lock_image_blocks", _number(0), "a block count >= 0"),
    ("lock_text_blocks", _number(0), "a block count >= 0"),
    ("checkpoint_every", _number(1), "a step interval >= 1"),
    ("keep_checkpoints", _number(0), "a count >= 0 (0 keeps every checkpoint)"),
    ("log_every", _number(1), "a step interval >= 1"),
    ("eval_every", _number(0), "a step interval >= 0 (0 = at the end)"),
    ("on_nonfinite", _choice(NONFINITE_POLICIES), f"one of {', '.join(NONFINITE_POLICIES)}"),
    ("seed", _number(0), "a seed >= 0"),
    ("num_workers", _number(0), "a process count >= 0 (0 decodes in the main process)"),
    ("prefetch_batches", _number(-1), "a batch count >= 0, or -1 for auto"),
    ("augment_threads", _number(-1), "a thread count >= 0, or -1 for auto"),
)


@dataclass
class TrainConfig:
    """Everything a training run needs; saved resolved to RUN/config.yaml.

    Defaults are chosen so a tiny model learns fast on a laptop CPU (the synthetic world):
    a high learning rate, short warmup and small batches. For real data and big models use
    the CLIP/open_clip values (lr 5e-4 at batch 32k, warmup 2k-10k, wd 0.2).
    """

    objective: str = "clip"
    data: str = ""                    # world folder, open_clip CSV, or WebDataset shard pattern
    model: str = "tiny-vit-t8"
    pretrained: str | None = None
    out: str = ""
    resume: str | None = None
    steps: int = 1000
    batch_size: int = 64              # GLOBAL images per optimiser step (all ranks x accumulation)
    accum_steps: int = 1              # micro-batches per optimiser step (negatives are per micro-batch)
    lr: float = 1e-3
    min_lr_ratio: float = 0.0         # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 50
    weight_decay: float = 0.1
    beta1: float = 0.9                # CLIP paper (Radford et al. 2021, App. F): betas (0.9, 0.98), eps 1e-6
    beta2: float = 0.98
    eps: float = 1e-6
    grad_clip: float = 1.0            # max global grad norm; 0 disables
    precision: str = "auto"           # auto = bf16 on CUDA with bf16 support, fp16 on older CUDA, fp32 on CPU
    grad_checkpointing: bool = False
    compile: bool = False
    ema_decay: float = 0.0            # 0 = no EMA of the exported model's weights
    lock_image_blocks: int = 0        # freeze patch embedding + the first N vision blocks
    lock_text_blocks: int = 0         # freeze token/pos embedding + the first N text blocks
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 10
    eval_every: int = 0               # 0 = evaluate only at the end (when an evaluator is available)
    val_data: str | None = None       # defaults to the world's val split when --data is a world folder
    on_nonfinite: str = "stop"        # stop | skip a step whose loss or grad norm is NaN/inf
    seed: int = 0
    device: str | None = None
    num_workers: int = 1              # data-decoding worker processes per rank
    prefetch_batches: int = -1        # batches built ahead on a background thread; -1 = auto (2 on CUDA, 0 on CPU)
    augment_threads: int = -1         # threads augmenting a batch's samples; -1 = auto (8 on CUDA, 0 on CPU)
    objective_args: dict[str, Any] = field(default_factory=dict)  # the objective's own options

    def validate(self, world_size: int = 1) -> None:
        """Fail early, before anything is loaded or written, with one line naming the flag and what it needs."""
        for name, ok, expected in _RULES:
            value = getattr(self, name)
            if not ok(value):
                raise ConfigError(f"{flag_of(name)} {value!r}: expected {expected}")
        if self.batch_size % (world_size * self.accum_steps):
            raise ConfigError(f"--batch-size {self.batch_size}: expected a multiple of processes x --accum-steps "
                              f"= {world_size} x {self.accum_steps}")
        if not isinstance(self.objective_args, dict):
            raise ConfigError(f"objective_args {self.objective_args!r}: expected a mapping of option: value")
        for name in ("out", "resume"):
            path = getattr(self, name)
            if path and Path(path).exists() and not Path(path).is_dir():
                raise ConfigError(f"{flag_of(name)} {path}: is a file, expected a run folder")
        if self.val_data and not is_world(Path(self.val_data)):
            raise ConfigError(f"--val-data {self.val_data}: expected a world folder (with world.json, from "
                              "`clipdense data synth`) to evaluate on during training")

    def loader_threads(self, device_type: str) -> tuple[int, int]:
        """(prefetch_batches, augment_threads) with 'auto' resolved: on a CPU the step already uses every core."""
        on_gpu = device_type == "cuda"
        prefetch = self.prefetch_batches if self.prefetch_batches >= 0 else (2 if on_gpu else 0)
        threads = self.augment_threads if self.augment_threads >= 0 else (8 if on_gpu else 0)
        return prefetch, threads

    def micro_batch_size(self, world_size: int) -> int:
        """Images per rank per forward pass."""
        return self.batch_size // (world_size * self.accum_steps)
