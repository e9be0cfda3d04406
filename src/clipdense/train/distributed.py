"""torchrun support: process-group setup from the environment and the few collectives we need.

Multi-node is plain torchrun (``torchrun --nnodes N --node_rank R --master_addr HOST
--nproc_per_node G -m clipdense.cli.main train ...``): every rank reads RANK/WORLD_SIZE/LOCAL_RANK.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits; world_size 1 when not launched by torchrun."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def resolve_device(requested: str | None, local_rank: int = 0) -> torch.device:
    """cpu / cuda / cuda:N; default cuda (this rank's GPU) when available."""
    if requested in (None, "", "auto"):
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(requested)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {requested}: CUDA is not available on this machine")
        if device.index is None:
            device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    return device


def init_distributed(device_type: str) -> DistInfo:
    """Join the process group torchrun describes in the environment (NCCL on GPU, gloo on CPU)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return DistInfo(rank=rank, local_rank=local_rank, world_size=world_size)


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """Mean over ranks (identity without a process group); used for logged losses."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        value = value.detach().clone()
        dist.all_reduce(value)
        value /= dist.get_world_size()
    return value


def any_rank(flag: bool, device: torch.device) -> bool:
    """True if ``flag`` is true on any rank, so every rank takes the same branch (skip/stop)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        tensor = torch.tensor([1.0 if flag else 0.0], device=device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return bool(tensor.item() > 0)
    return flag


def barrier() -> None:
    """Wait for every rank (no-op without a process group)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def cleanup() -> None:
    """Leave the process group so the next run in this process starts clean."""
    if dist.is_initialized():
        dist.destroy_process_group()
