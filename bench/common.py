"""Shared pieces of the GPU throughput benchmarks (issue 7): timing, FLOP counting, peak, output.

Every benchmark times ``warmup`` untimed steps, then timed steps between device synchronisations
until ``steps`` are done or the per-config time limit is reached, so a whole script fits in one
10-minute device call. Results are written to JSON after every config (a killed run keeps what
it measured) and printed as a Markdown table for its page in docs/results/.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
from torch.utils.flop_counter import FlopCounterMode

os.environ.setdefault("HF_HUB_OFFLINE", "1")   # models are random-init: never reach for the hub


class StopBenchmark(Exception):
    """Raised from a step hook to end a training loop once enough steps were timed."""


def add_common_args(parser: argparse.ArgumentParser, total_budget_s: float = 540.0) -> None:
    """Flags every benchmark script has."""
    parser.add_argument("--device", default=None, help="cuda, cuda:N or cpu (default: cuda when available)")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny model, tiny sizes, 2 timed steps: checks the script runs (CPU, seconds)")
    parser.add_argument("--out", default=None, help="JSON file for the results (written after every config)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps per config (default 3; smoke 1)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per config (default 10; smoke 2)")
    parser.add_argument("--config-limit-s", type=float, default=30.0,
                        help="stop timing a config after this many seconds (at least 2 timed steps)")
    parser.add_argument("--total-budget-s", type=float, default=total_budget_s,
                        help="skip configs not started within this many seconds (fits one 10-minute call)")


def resolve_device(requested: str | None) -> torch.device:
    """The benchmark device: cuda when available unless told otherwise."""
    device = torch.device(requested or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True     # as any training run on Ampere+ would
        torch.backends.cudnn.allow_tf32 = True
    return device


def steps_and_warmup(args: argparse.Namespace) -> tuple[int, int]:
    """(timed steps, warmup steps) after the smoke defaults."""
    steps = args.steps if args.steps is not None else (2 if args.smoke else 10)
    warmup = args.warmup if args.warmup is not None else (1 if args.smoke else 3)
    return max(2, steps), max(0, warmup)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gib(device: torch.device) -> float:
    """Peak allocated GPU memory since the last reset; on CPU the process's max RSS (whole run)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20   # KiB on Linux


def free_memory(device: torch.device) -> None:
    """Drop what the last config left (models, compiled graphs, cached blocks)."""
    gc.collect()
    torch._dynamo.reset()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def count_flops(fn: Callable[[], Any]) -> float:
    """FLOPs of one call of ``fn`` (forward and backward matmuls/convs/attention) by FlopCounterMode."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return float(counter.get_total_flops())


def matmul_peak(device: torch.device, smoke: bool, seconds: float = 3.0) -> dict[str, float]:
    """Achievable bf16 matmul TFLOP/s on this device, the denominator of MFU.

    Square products of side 8192 (256 in smoke mode), timed between synchronisations.
    """
    n = 256 if smoke else 8192
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    synchronize(device)
    iters, start = 0, time.perf_counter()
    while True:
        for _ in range(10):
            a @ b
        iters += 10
        synchronize(device)
        elapsed = time.perf_counter() - start
        if elapsed >= (0.05 if smoke else seconds):
            break
    return {"matmul_side": n, "bf16_matmul_tflops": 2 * n ** 3 * iters / elapsed / 1e12}


@dataclass
class StepClock:
    """Synchronised timestamps after each step; raises StopBenchmark when timing is done.

    Call ``tick()`` after every step (a training loop's hook or a plain loop). The first
    ``warmup`` steps are untimed; timing stops after ``steps`` timed steps or ``limit_s``
    seconds of timed steps (at least 2).
    """

    device: torch.device
    warmup: int
    steps: int
    limit_s: float
    times: list[float] = field(default_factory=list)

    def tick(self) -> None:
        synchronize(self.device)
        self.times.append(time.perf_counter())
        timed = len(self.times) - 1 - self.warmup
        if timed >= self.steps or (timed >= 2 and self.times[-1] - self.times[self.warmup] > self.limit_s):
            raise StopBenchmark

    def start(self) -> None:
        """Mark the start of the first (warmup) step."""
        synchronize(self.device)
        self.times = [time.perf_counter()]

    @property
    def timed_steps(self) -> int:
        return len(self.times) - 1 - self.warmup

    @property
    def seconds_per_step(self) -> float:
        return (self.times[-1] - self.times[self.warmup]) / max(1, self.timed_steps)

    @property
    def first_step_s(self) -> float:
        """The first step, where compilation and autotuning happen."""
        return self.times[1] - self.times[0] if len(self.times) > 1 else float("nan")


def run_loop(step: Callable[[], Any], clock: StepClock) -> None:
    """Call ``step`` until the clock says enough."""
    clock.start()
    try:
        while True:
            step()
            clock.tick()
    except StopBenchmark:
        pass


def run_fit(trainer: Any, clock: StepClock, device: torch.device) -> None:
    """``run_loop`` for our engine: ``trainer.fit()`` until the clock's step hook says enough."""
    reset_peak_memory(device)
    clock.start()
    try:
        trainer.fit()
    except StopBenchmark:
        pass


def rate_fields(clock: StepClock, images_per_step: int, flops_per_step: float | None,
                peak_tflops: float, device: torch.device) -> dict[str, float]:
    """images/s, TFLOP/s, MFU, step time and peak memory of a timed config."""
    seconds = clock.seconds_per_step
    out = {"images_per_s": images_per_step / seconds, "step_ms": 1000 * seconds,
           "timed_steps": clock.timed_steps, "first_step_s": clock.first_step_s,
           "peak_mem_gib": peak_memory_gib(device)}
    if flops_per_step is not None:
        out["tflop_per_step"] = flops_per_step / 1e12
        out["tflops"] = flops_per_step / seconds / 1e12
        out["mfu"] = out["tflops"] / peak_tflops
    return out


def environment(device: torch.device) -> dict[str, Any]:
    """What ran: versions, device, date, commit (for the results table)."""
    import open_clip

    env: dict[str, Any] = {"date": str(date.today()), "python": platform.python_version(),
                           "torch": torch.__version__, "open_clip": getattr(open_clip, "__version__", "?"),
                           "device": str(device), "argv": " ".join(sys.argv)}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        env["cuda"] = torch.version.cuda
    try:
        env["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                       timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        env["commit"] = "unknown"
    return env


class Results:
    """Rows of one benchmark run, rewritten to ``out`` after each config; enforces the total budget."""

    def __init__(self, out: str | None, env: Mapping[str, Any], budget_s: float) -> None:
        self.out, self.env, self.budget_s = out, dict(env), budget_s
        self.start = time.perf_counter()
        self.extra: dict[str, Any] = {}
        self.rows: list[dict[str, Any]] = []

    def run(self, row: dict[str, Any], measure: Callable[[], Mapping[str, Any]], device: torch.device) -> None:
        """Measure one config into ``row``; records errors (e.g. out of memory) and budget skips."""
        if time.perf_counter() - self.start > self.budget_s:
            row["skipped"] = f"total budget {self.budget_s:.0f} s used up"
        else:
            free_memory(device)
            reset_peak_memory(device)
            try:
                row.update(measure())
            except torch.cuda.OutOfMemoryError:
                row["error"] = "out of memory"
            except Exception as exc:   # one broken config must not lose the others' numbers
                row["error"] = f"{type(exc).__name__}: {exc}"[:300]
            free_memory(device)
        self.rows.append(row)
        print(json.dumps(row, default=_jsonable), flush=True)
        self.write()

    def write(self) -> None:
        if self.out:
            Path(self.out).parent.mkdir(parents=True, exist_ok=True)
            payload = {"environment": self.env, **self.extra, "rows": self.rows}
            Path(self.out).write_text(json.dumps(payload, indent=1, default=_jsonable) + "\n")


def _jsonable(value: Any) -> Any:
    return float(value) if isinstance(value, torch.Tensor) else str(value)


def cell(row: Mapping[str, Any], key: str, fmt: str) -> str:
    """One table cell; '-' where the value is missing (error, skip, not measured)."""
    if key in row and row[key] is not None:
        return format(row[key], fmt) if fmt else str(row[key])
    return "-"


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str, str]]) -> str:
    """``columns``: (key, header, format spec). Rows with an error or skip get a note column."""
    lines = ["| " + " | ".join(h for _, h, _ in columns) + " | note |",
             "|" + "---|" * (len(columns) + 1)]
    for row in rows:
        note = row.get("error") or row.get("skipped") or ""
        lines.append("| " + " | ".join(cell(row, k, f) for k, _, f in columns) + f" | {note} |")
    return "\n".join(lines)


def repeat_batch(batch: Mapping[str, torch.Tensor]) -> Iterator[dict[str, torch.Tensor]]:
    """The same device-resident batch forever: random data, no loader in the timed loop."""
    while True:
        yield dict(batch)


def first_dim(batch: Any) -> int:
    """Images in a batch (dict, tuple or tensor): the leading size of its first tensor."""
    if isinstance(batch, Mapping):
        batch = next(iter(batch.values()))
    if isinstance(batch, (list, tuple)):
        batch = batch[0]
    return int(batch.shape[0])


def summary_line(env: Mapping[str, Any], peak_tflops: float) -> str:
    """The line above each table: hardware, versions, date, commit, measured peak."""
    return (f"{env.get('gpu', env['device'])}, bf16 matmul peak {peak_tflops:.4g} TFLOP/s (measured in this run), "
            f"torch {env['torch']}, open_clip {env['open_clip']}, {env['date']}, commit {env['commit']}")


def start_run(args: argparse.Namespace) -> tuple[torch.device, "Results", float]:
    """What every benchmark starts with: its device, its results file, and the bf16 matmul peak (TFLOP/s)
    measured now, so MFU is against this machine in this run."""
    device = resolve_device(args.device)
    torch.manual_seed(0)
    results = Results(args.out, environment(device), args.total_budget_s)
    results.extra["peak"] = matmul_peak(device, args.smoke)
    return device, results, results.extra["peak"]["bf16_matmul_tflops"]
