"""The one configuration dataclass of `clipdense train` (defaults, then YAML, then CLI flags)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from ..data.world.folder import is_world
from ..errors import ConfigError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
NONFINITE_POLICIES = ("stop", "skip")


def flag_of(name: str) -> str:
    """The command-line flag of a TrainConfig field (a YAML key of the same name sets it too)."""
    return "--" + name.replace("_", "-")


@dataclass(frozen=True)
class Range:
    """The interval a numeric setting must lie in, declared with its field; NaN, inf and bools never lie in it."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def __str__(self) -> str:
        low = f"{self.low:g}"
        if math.isinf(self.high):
            return f"{'>' if self.low_open else '>='} {low}"
        return f"in {'(' if self.low_open else '['}{low}, {self.high:g}{')' if self.high_open else ']'}"


def setting(default: Any, help: str, what: str = "", range: Range | None = None, note: str = "",
            choices: tuple[str, ...] | None = None, metavar: str | None = None, flag: bool = True) -> Any:
    """A TrainConfig field and everything its flag says: ``help``, and the ``range`` (``what`` it counts,
    a ``note`` on special values) or ``choices`` its values are checked against, on the command line and
    in YAML alike. ``flag=False``: set by YAML (or another flag) only."""
    expected = ""
    if range is not None:
        expected = f"{what} {range}" + (f" ({note})" if note else "")
    elif choices is not None:
        expected = f"one of {', '.join(choices)}"
    metadata = {"help": help, "range": range, "choices": choices, "expected": expected, "note": note,
                "metavar": metavar, "flag": flag}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def valid(meta: Mapping[str, Any], value: Any) -> bool:
    """Whether ``value`` lies in the range or choices a field's metadata declares (True when it declares none)."""
    if meta.get("range") is not None:
        return value in meta["range"]
    return meta.get("choices") is None or value in meta["choices"]


DATA_HELP = ("a world folder, an open_clip CSV, WebDataset shards ('shards-{000..009}.tar'), a data YAML, or "
             "coco:images=DIR,annotations=FILE / semseg:images=DIR,labels=DIR,classes=FILE / imagefolder:root=DIR")
STEPS, INTERVAL = "a step count", "a step interval"


@dataclass
class TrainConfig:
    """Everything a training run needs; saved resolved to RUN/config.yaml. Each field is the one declaration
    of its YAML key and its flag (help, range, choices): `clipdense train` and `distill` generate their flags.

    Defaults are chosen so a tiny model learns fast on a laptop CPU (the synthetic world):
    a high learning rate, short warmup and small batches. For real data and big models use
    the CLIP/open_clip values (lr 5e-4 at batch 32k, warmup 2k-10k, wd 0.2).
    """

    objective: str = setting("clip", "training method")
    data: str = setting("", DATA_HELP)
    model: str = setting("tiny-vit-t8", "open_clip name, built-in tiny name, .safetensors or run dir")
    pretrained: str | None = setting(None, "open_clip pretrained tag or a local weights file")
    out: str = setting("", "run directory (checkpoints, metrics.jsonl, config.yaml)", metavar="RUN_DIR")
    resume: str | None = setting(None, "continue RUN_DIR exactly from its last checkpoint", metavar="RUN_DIR")
    steps: int = setting(1000, "optimiser steps", STEPS, Range(1))
    batch_size: int = setting(64, "GLOBAL images per optimiser step: all ranks x accumulation",
                              "images per step", Range(1))
    accum_steps: int = setting(1, "micro-batches per optimiser step (negatives are per micro-batch)",
                               "micro-batches per step", Range(1))
    lr: float = setting(1e-3, "peak learning rate", "a learning rate", Range(0, low_open=True))
    min_lr_ratio: float = setting(0.0, "the cosine schedule decays to lr x this", "a fraction of --lr", Range(0, 1))
    warmup_steps: int = setting(50, "linear warmup steps", STEPS, Range(0))
    weight_decay: float = setting(0.1, "AdamW weight decay", "a weight decay", Range(0))
    # CLIP paper (Radford et al. 2021, App. F): betas (0.9, 0.98), eps 1e-6
    beta1: float = setting(0.9, "AdamW beta1 (CLIP: 0.9)", "a value", Range(0, 1, high_open=True))
    beta2: float = setting(0.98, "AdamW beta2 (CLIP: 0.98)", "a value", Range(0, 1, high_open=True))
    eps: float = setting(1e-6, "AdamW epsilon (CLIP: 1e-6)", "a value", Range(0, low_open=True))
    grad_clip: float = setting(1.0, "max global gradient norm", "a max gradient norm", Range(0), "0 = off")
    precision: str = setting("auto", "auto = bf16 on CUDA with bf16 support, fp16 on older CUDA, fp32 on CPU",
                             choices=PRECISIONS)
    grad_checkpointing: bool = setting(False, "recompute activations in backward (less memory)")
    compile: bool = setting(False, "torch.compile the objective")
    ema_decay: float = setting(0.0, "EMA of the exported model's weights -> ema.safetensors", "a decay",
                               Range(0, 1, high_open=True), "0 = off")
    lock_image_blocks: int = setting(0, "freeze the patch embedding + the first N vision blocks", "a block count",
                                     Range(0))
    lock_text_blocks: int = setting(0, "freeze the token/position embedding + the first N text blocks",
                                    "a block count", Range(0))
    checkpoint_every: int = setting(500, "steps between checkpoints", INTERVAL, Range(1))
    keep_checkpoints: int = setting(2, "keep the newest K checkpoints", "a count", Range(0),
                                    "0 keeps every checkpoint")
    log_every: int = setting(10, "steps between metrics records", INTERVAL, Range(1))
    eval_every: int = setting(0, "zero-shot + retrieval every N steps (when an evaluator is available)", INTERVAL,
                              Range(0), "0 = at the end")
    val_data: str | None = setting(None, "world folder to evaluate on; unset: --data when it is a world")
    on_nonfinite: str = setting("stop", "stop, or skip a step whose loss or grad norm is NaN/inf",
                                choices=NONFINITE_POLICIES)
    seed: int = setting(0, "run seed (data order, augmentation, init)", "a seed", Range(0))
    device: str | None = setting(None, "cpu, cuda, cuda:1 ...; unset: cuda if available (torchrun: this rank's GPU)")
    num_workers: int = setting(1, "image-decoding processes per rank", "a process count", Range(0),
                               "0 decodes in the main process")
    prefetch_batches: int = setting(-1, "batches built ahead on a background thread", "a batch count", Range(-1),
                                    "-1 = auto: 2 on CUDA, 0 on CPU")
    augment_threads: int = setting(-1, "threads augmenting each batch's samples", "a thread count", Range(-1),
                                   "-1 = auto: 8 on CUDA, 0 on CPU")
    objective_args: dict[str, Any] = setting({}, "the objective's own options (--objective-arg KEY=VALUE)",
                                             flag=False)

    def validate(self, world_size: int = 1) -> None:
        """Fail early, before anything is loaded or written, with one line naming the flag and what it needs."""
        for f in fields(self):
            value = getattr(self, f.name)
            if not valid(f.metadata, value):
                raise ConfigError(f"{flag_of(f.name)} {value!r}: expected {f.metadata['expected']}")
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
