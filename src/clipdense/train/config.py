"""The one configuration dataclass of `clipdense train` (defaults, then YAML, then CLI flags)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
NONFINITE_POLICIES = ("stop", "skip")


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
        """Fail early with one line naming the bad value."""
        if self.steps < 1:
            raise ConfigError(f"steps must be >= 1, got {self.steps}")
        if self.batch_size < 1 or self.accum_steps < 1:
            raise ConfigError(f"batch_size and accum_steps must be >= 1, got {self.batch_size}, {self.accum_steps}")
        if self.batch_size % (world_size * self.accum_steps):
            raise ConfigError(f"batch_size {self.batch_size} must be divisible by world_size x accum_steps "
                              f"= {world_size} x {self.accum_steps}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.on_nonfinite not in NONFINITE_POLICIES:
            raise ConfigError(f"on_nonfinite must be one of {NONFINITE_POLICIES}, got {self.on_nonfinite!r}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if not isinstance(self.objective_args, dict):
            raise ConfigError(f"objective_args must be a mapping, got {self.objective_args!r}")

    def loader_threads(self, device_type: str) -> tuple[int, int]:
        """(prefetch_batches, augment_threads) with 'auto' resolved: on a CPU the step already uses every core."""
        on_gpu = device_type == "cuda"
        prefetch = self.prefetch_batches if self.prefetch_batches >= 0 else (2 if on_gpu else 0)
        threads = self.augment_threads if self.augment_threads >= 0 else (8 if on_gpu else 0)
        return prefetch, threads

    def micro_batch_size(self, world_size: int) -> int:
        """Images per rank per forward pass."""
        return self.batch_size // (world_size * self.accum_steps)
