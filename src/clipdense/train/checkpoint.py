"""Run-directory checkpoints: ``step-NNNNNNNN/{model|head.safetensors, state.pt[, ema[-head].safetensors]}``.

The exported module is written as what it is: a CLIP model (``model.safetensors``, loadable by
``load_model``) or, for a run that trains a head, a head file (``head.safetensors`` and
``ema-head.safetensors``, loadable by ``load_head``). Everything else a resume
needs (optimiser, scaler, EMA, objective extras, RNG, data position) is a dict of tensors and
primitives read back with ``torch.load(weights_only=True)``. Every file is written atomically and
the step directory is renamed into place last, so a kill at any moment leaves either a complete
checkpoint or none.
"""
from __future__ import annotations

import io
import os
import random
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from ..config import apply_umask, atomic_write_bytes
from ..errors import ConfigError
from ..heads import HEAD_FILE, Backbone, kind_of, save_head
from ..models.weights import safe_torch_load, save_weights

STEP_DIR = re.compile(r"^step-(\d{8})$")
MODEL_FILE = "model.safetensors"


@dataclass(frozen=True)
class Export:
    """How a run writes its exported module: file names and the writer ``(module, path, metadata)``."""

    filename: str
    ema_filename: str
    write: Callable[[nn.Module, Path, Mapping[str, str]], None]


def model_export(model_name: str, model_config: Mapping[str, Any] | None) -> Export:
    """The export is a CLIP model: safetensors with its name and open_clip config (``load_model``)."""
    def write(model: nn.Module, path: Path, metadata: Mapping[str, str]) -> None:
        save_weights(model, path, model_name, model_config=model_config, extra_metadata=metadata)
    return Export(MODEL_FILE, "ema.safetensors", write)


def head_export(head: nn.Module, backbone: Any) -> Export:
    """The export is ``head`` (a registered kind, checked now) trained on ``backbone`` (a Bundle): a head
    file (``load_head``) that names the weights it ran on. The backbone is frozen, so it is fingerprinted once,
    here, not at every save."""
    kind_of(head)
    described = Backbone.of(backbone)

    def write(module: nn.Module, path: Path, metadata: Mapping[str, str]) -> None:
        save_head(module, path, described, extra_metadata=metadata)
    return Export(HEAD_FILE, "ema-head.safetensors", write)


#: the files a complete checkpoint holds its export in (one of them)
EXPORT_FILES = (MODEL_FILE, HEAD_FILE)


def checkpoint_dir(run_dir: str | os.PathLike, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step-{step:08d}"


def list_checkpoints(run_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := STEP_DIR.match(p.name))
             and (p / "state.pt").is_file() and any((p / name).is_file() for name in EXPORT_FILES)]
    return sorted(found)


def latest_checkpoint(run_dir: str | os.PathLike) -> tuple[int, Path] | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def capture_rng() -> dict[str, Any]:
    """Global RNG states as tensors/primitives (weights_only-loadable)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(),
                             "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(run_dir: str | os.PathLike, step: int, model: nn.Module, export: Export,
                    state: Mapping[str, Any], ema_model: nn.Module | None = None, keep: int = 2,
                    metadata: Mapping[str, str] | None = None) -> Path:
    """Write one checkpoint (built in a temp folder, then renamed) and prune to the newest ``keep``.

    ``model`` (and ``ema_model``) are written by ``export`` (a model or a head file), with ``metadata``.
    """
    final = checkpoint_dir(run_dir, step)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        apply_umask(tmp, directory=True)   # mkdtemp makes 0700; a checkpoint is as readable as any folder
        meta = {**(metadata or {}), "clipdense.step": str(step)}
        export.write(model, tmp / export.filename, meta)
        if ema_model is not None:
            export.write(ema_model, tmp / export.ema_filename, {**meta, "clipdense.ema": "true"})
        buffer = io.BytesIO()
        torch.save(dict(state), buffer)
        atomic_write_bytes(tmp / "state.pt", buffer.getvalue())
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    prune_checkpoints(run_dir, keep)
    return final


def prune_checkpoints(run_dir: str | os.PathLike, keep: int) -> None:
    """Delete all but the newest ``keep`` complete checkpoints, and leftovers of interrupted writes."""
    root = Path(run_dir) / "checkpoints"
    for leftover in root.glob(".step-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    if keep > 0:
        for _, path in list_checkpoints(run_dir)[:-keep]:
            shutil.rmtree(path, ignore_errors=True)


def load_state(path: Path) -> dict[str, Any]:
    """Read a state.pt safely (tensors and primitive containers only; anything else is refused, never run)."""
    state = safe_torch_load(path / "state.pt", "training state")
    if not isinstance(state, dict) or not {"step", "optimizer", "rng"} <= set(state):
        raise ConfigError(f"{path / 'state.pt'}: not a clipdense training state (expected step, optimizer, rng, ...)")
    return state
