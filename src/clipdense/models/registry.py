"""Built-in tiny architectures (open_clip JSON configs shipped with clipdense), shipped weights, and
architectures registered at run time (from checkpoint metadata or converted Hugging Face models)."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import open_clip

CONFIG_DIR = Path(__file__).parent / "configs"
WEIGHTS_DIR = Path(__file__).parent / "weights"
PREPROCESS_KEY = "preprocess_cfg"  # clipdense's addition to an open_clip config, as in open_clip_config.json
_registered = False
_preprocess: dict[str, dict[str, Any]] = {}


def register_builtin_configs() -> None:
    """Make our tiny configs known to open_clip so its factory and tokenizer handle them."""
    global _registered
    if not _registered:
        open_clip.add_model_config(CONFIG_DIR)
        _registered = True


def builtin_models() -> list[str]:
    """Names of the tiny architectures shipped with clipdense."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def shipped_weights() -> dict[tuple[str, str], Path]:
    """(model name, tag) -> safetensors file shipped inside the package (``NAME--TAG.safetensors``)."""
    found = {}
    for path in sorted(WEIGHTS_DIR.glob("*--*.safetensors")):
        name, tag = path.stem.split("--", 1)
        found[(name, tag)] = path
    return found


def register_config(name: str, config: dict[str, Any]) -> None:
    """Teach open_clip an architecture that exists only in a checkpoint or a converted model.

    A ``preprocess_cfg`` entry (mean, std, size, interpolation) is kept apart - open_clip's model
    constructor takes architecture keys only - and is returned by ``registered_preprocess``.
    """
    register_builtin_configs()
    config = dict(config)
    preprocess = config.pop(PREPROCESS_KEY, None)
    if preprocess:
        _preprocess[name] = dict(preprocess)
    else:
        _preprocess.pop(name, None)
    if open_clip.get_model_config(name) == config:
        return
    folder = Path(tempfile.mkdtemp(prefix="clipdense-cfg-"))
    (folder / f"{name}.json").write_text(json.dumps(config))
    open_clip.add_model_config(folder)


def registered_preprocess(name: str) -> dict[str, Any] | None:
    """The preprocess settings registered with ``name`` (None: open_clip's defaults apply)."""
    return dict(_preprocess[name]) if name in _preprocess else None
