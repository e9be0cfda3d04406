"""Reading and writing weight files: safetensors (self-describing) and torch state dicts."""
from __future__ import annotations

import hashlib
import json
import os
import pickle  # torch.load(weights_only=True) refuses arbitrary objects with UnpicklingError
import re
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from ..config import atomic_write_bytes
from ..errors import ClipDenseError, ModelLoadError

#: what kind of clipdense file it is when not a model (e.g. "head"); model files carry META_MODEL_NAME
META_FORMAT = "clipdense.format"
META_MODEL_NAME = "clipdense.model_name"
META_MODEL_CONFIG = "clipdense.model_config"
META_DENSE_SIZE = "clipdense.dense_size"   # input side a dense model was trained to be read at (CLIPSelf student)
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")
#: values of each tensor that enter the fingerprint (evenly spaced over the flattened tensor)
FINGERPRINT_SAMPLES = 4096


def save_weights(model: nn.Module, path: str | os.PathLike, model_name: str,
                 model_config: Mapping[str, Any] | None = None,
                 extra_metadata: Mapping[str, str] | None = None) -> None:
    """Atomically write ``model``'s state dict as safetensors that also name their architecture.

    The metadata lets ``load_model(path)`` rebuild the model without being told its name.
    """
    state = portable_state_dict(model)
    metadata = {META_MODEL_NAME: model_name}
    if model_config is not None:
        metadata[META_MODEL_CONFIG] = json.dumps(model_config)
    metadata.update(extra_metadata or {})
    atomic_write_bytes(path, save(state, metadata=metadata))


def portable_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """``module``'s state as detached, contiguous CPU tensors that safetensors accepts."""
    return _dedupe_shared({k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()})


@torch.no_grad()
def model_fingerprint(model: nn.Module) -> str:
    """A short hash that tells two sets of weights of one architecture apart (a name alone cannot).

    Every state tensor contributes its name, shape and up to ``FINGERPRINT_SAMPLES`` evenly spaced
    values, so a ViT-B costs about a million values, not 150 M. Values are hashed after moving to
    the CPU and rounding to bfloat16: the same weights give the same fingerprint on any device and
    in fp32 or bf16 (an fp16 copy is another rounding of the weights, hence other weights).
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().reshape(-1)
        if flat.numel() > FINGERPRINT_SAMPLES:
            index = torch.arange(FINGERPRINT_SAMPLES, device=flat.device) * flat.numel() // FINGERPRINT_SAMPLES
            flat = flat[index]
        flat = flat.cpu()
        if flat.is_floating_point():
            data = flat.float().to(torch.bfloat16).view(torch.int16)
        else:
            data = flat.to(torch.int64)
        digest.update(f"{name}:{tuple(tensor.shape)};".encode())
        digest.update(data.contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _dedupe_shared(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses tensors sharing memory; clone the later duplicates."""
    seen: set[int] = set()
    out = {}
    for key, tensor in state.items():
        ptr = tensor.untyped_storage().data_ptr() if tensor.numel() else -1
        out[key] = tensor.clone() if ptr in seen else tensor
        if ptr != -1:
            seen.add(ptr)
    return out


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The string metadata of a safetensors file ({} for other formats)."""
    path = Path(path)
    if path.suffix != ".safetensors":
        return {}
    from safetensors import safe_open
    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except (SafetensorError, OSError) as exc:
        raise ModelLoadError(f"{path}: not a readable safetensors file ({exc})") from exc


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a state dict from .safetensors or a torch file, without unpickling arbitrary objects."""
    path = Path(path)
    if path.is_dir():
        raise ModelLoadError(f"{path}: a folder, expected a weights file ({', '.join(WEIGHT_SUFFIXES)}); a run "
                             "folder or a model folder is given as the model, not as its pretrained weights")
    if not path.is_file():
        raise ModelLoadError(f"{path}: weights file not found")
    if path.suffix not in WEIGHT_SUFFIXES:
        raise ModelLoadError(f"{path}: expected a weights file ending in {', '.join(WEIGHT_SUFFIXES)}")
    if path.suffix != ".safetensors":
        return _unwrap_state_dict(safe_torch_load(path, "weights"), path)
    try:
        state: Any = load_file(str(path))
    except (SafetensorError, RuntimeError, OSError, EOFError, ValueError) as exc:
        raise ModelLoadError(f"{path}: could not read weights ({str(exc).splitlines()[0]})") from exc
    return _unwrap_state_dict(state, path)


def load_error_line(exc: BaseException) -> str:
    """One line saying why torch.load (weights_only) failed. A refused pickle says what it refused and that
    nothing ran; torch's own advice to switch the safety off is never passed on."""
    text = str(exc)
    if isinstance(exc, pickle.UnpicklingError) and "weights only" in text.lower():
        found = re.search(r"GLOBAL ([\w.]+)", text)
        what = f" ({found.group(1)})" if found else ""
        return (f"refused: it holds pickled Python objects{what}, not only tensors, and nothing in it was run; "
                "save it as .safetensors (or a plain state dict of tensors) where it was made")
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return type(exc).__name__ if not first or "weights_only" in first else first


def safe_torch_load(path: str | os.PathLike, what: str = "weights",
                    error: type[ClipDenseError] = ModelLoadError) -> Any:
    """``torch.load(weights_only=True)`` whose every failure is one line naming the file: tensors and plain
    containers load, anything else is refused before it can run. (A corrupt or foreign file makes the
    unpickler raise almost any exception type, hence the broad catch.)"""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
    except OSError as exc:
        raise error(f"{path}: could not read {what}: {exc.strerror or exc}") from exc
    if not head.startswith((b"PK\x03\x04", b"\x80")):   # torch.save's zip archive, or a legacy pickle
        raise error(f"{path}: could not read {what}: not a file written by torch.save (it starts with {head!r})")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - see the docstring
        reason = load_error_line(exc)
        if not reason.startswith("refused"):
            reason = f"not a readable torch file ({reason})"
        raise error(f"{path}: could not read {what}: {reason}") from exc


def _unwrap_state_dict(state: Any, path: Path) -> dict[str, torch.Tensor]:
    """Accept open_clip training checkpoints ({'state_dict': ...}, 'module.' prefixes)."""
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelLoadError(f"{path}: expected a state dict of tensors")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def load_into(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Strictly load ``state``; on mismatch name the first offending keys and shapes."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [f"{k} {tuple(state[k].shape)} (model has {tuple(expected[k].shape)})"
                   for k in expected if k in state and state[k].shape != expected[k].shape]
    problems = []
    if missing:
        problems.append(f"missing keys {missing[:3]}{' ...' if len(missing) > 3 else ''}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected[:3]}{' ...' if len(unexpected) > 3 else ''}")
    if wrong_shape:
        problems.append(f"wrong shapes {wrong_shape[:3]}{' ...' if len(wrong_shape) > 3 else ''}")
    if problems:
        raise ModelLoadError(f"{source}: does not fit this architecture: " + "; ".join(problems))
    model.load_state_dict(state, strict=True)


#: model specs whose scheme brings its own weights (open_clip's hub and folders, transformers repos)
WEIGHTED_SCHEMES = ("hf-hub:", "local-dir:", "hf-transformers:")


def is_random_init(spec: str | os.PathLike, pretrained: str | os.PathLike | None) -> bool:
    """Whether ``load_model(spec, pretrained)`` gives random weights: an architecture name with no pretrained tag
    or file (a file, folder, run dir or hub id always brings weights)."""
    text = str(spec)
    return pretrained in (None, "") and not text.startswith(WEIGHTED_SCHEMES) and not Path(text).exists()
