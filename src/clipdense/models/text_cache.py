"""An on-disk cache of prompt-ensemble class embeddings, so the text tower runs once per class name.

With ViT-B-16 on a CPU the 80 ImageNet prompts of a few classes cost tens of seconds; the same names
are asked for again by every ``segment`` / ``classify`` / ``detect`` / ``eval`` call, the web page and
the adapters. Each class's embedding is one small safetensors file::

    $XDG_CACHE_HOME/clipdense/text/<weights fingerprint>/<entry key>.safetensors

The entry key hashes everything the embedding depends on: the weights fingerprint
(``models.weights.model_fingerprint``), the parameters' dtype, the model class and open_clip's version
(the code that runs the weights), the tokenizer, and the class's filled prompt texts (so templates given as callables are keyed by what they produce). Writes are atomic; an
unreadable or inconsistent entry is recomputed and rewritten with a warning; a cache folder that
cannot be written only warns. ``use_text_cache(False)`` (the CLI's ``--no-cache``) bypasses it.
"""
from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import open_clip
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from ..config import atomic_write_bytes
from .weights import model_fingerprint

#: bumped when the entry layout or what enters the key changes (old entries are then simply not found)
CACHE_VERSION = 1
#: weights fingerprints kept; the least recently used folders beyond this are removed (a training run
#: that evaluates every few steps would otherwise add a folder per evaluation)
MAX_MODELS = 32
#: set to 0 / false / no / off to bypass the cache in every process that inherits it
ENV_SWITCH = "CLIPDENSE_TEXT_CACHE"
_EMBEDDING = "embedding"
_KEY = "clipdense.text_cache.key"

_enabled: contextvars.ContextVar[bool] = contextvars.ContextVar("clipdense_text_cache", default=True)
_warned_unwritable: set[str] = set()


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/clipdense/text`` (``~/.cache/clipdense/text`` when XDG_CACHE_HOME is unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "clipdense" / "text"


@contextlib.contextmanager
def use_text_cache(enabled: bool) -> Iterator[None]:
    """Within this block, ``text_classifier`` reads and writes the cache only when ``enabled``."""
    token = _enabled.set(enabled)
    try:
        yield
    finally:
        _enabled.reset(token)


def text_cache_enabled() -> bool:
    """Whether the cache is in use here (the ``use_text_cache`` setting and the environment switch)."""
    env = os.environ.get(ENV_SWITCH, "").strip().lower()
    return _enabled.get() and env not in {"0", "false", "no", "off"}


def tokenizer_identity(tokenizer: Any) -> str:
    """What distinguishes one tokenizer from another for the same weights (class, context, vocabulary)."""
    inner = getattr(tokenizer, "tokenizer", None)
    source = getattr(inner, "name_or_path", "") if inner is not None else ""
    kind = type(tokenizer)
    return f"{kind.__module__}.{kind.__qualname__}:{getattr(tokenizer, 'context_length', '')}:{source}"


class TextCache:
    """The entries of one model's weights (a fingerprint) under ``root``."""

    def __init__(self, model: torch.nn.Module, tokenizer: Any, root: Path | None = None) -> None:
        self.fingerprint = model_fingerprint(model)
        dtype = next(model.parameters()).dtype
        code = f"{type(model).__module__}.{type(model).__qualname__}@open_clip {open_clip.__version__}"
        self._salt = json.dumps([CACHE_VERSION, self.fingerprint, str(dtype), code, tokenizer_identity(tokenizer)])
        self.root = root or cache_root()
        self.folder = self.root / self.fingerprint

    def key(self, prompts: Sequence[str]) -> str:
        """The entry key of one class: its filled prompts under this model and tokenizer."""
        return hashlib.sha256((self._salt + json.dumps(list(prompts))).encode()).hexdigest()[:32]

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.safetensors"

    def read(self, key: str) -> torch.Tensor | None:
        """The stored (D,) embedding, or None when absent; a damaged entry warns and counts as absent."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="pt") as handle:
                stored_key = (handle.metadata() or {}).get(_KEY)
                embedding = handle.get_tensor(_EMBEDDING)
            if stored_key != key or embedding.ndim != 1 or not torch.isfinite(embedding).all():
                raise ValueError("wrong key, shape or values")
        except (SafetensorError, OSError, KeyError, ValueError, RuntimeError) as exc:
            warnings.warn(f"{path}: damaged text-classifier cache entry ({str(exc).splitlines()[0]}); "
                          "recomputing it", RuntimeWarning, stacklevel=3)
            return None
        return embedding.float()

    def write(self, key: str, embedding: torch.Tensor, classname: str) -> None:
        """Store one class's embedding atomically; a folder that cannot be written warns once, never fails."""
        data = save({_EMBEDDING: embedding.detach().float().cpu().contiguous()},
                    metadata={_KEY: key, "clipdense.text_cache.class": classname})
        new_model = not self.folder.is_dir()
        try:
            atomic_write_bytes(self.path(key), data)
        except OSError as exc:
            if str(self.root) not in _warned_unwritable:
                _warned_unwritable.add(str(self.root))
                warnings.warn(f"{self.root}: text-classifier cache not writable ({exc.strerror or exc}); "
                              "embeddings are recomputed each time", RuntimeWarning, stacklevel=3)
            return
        if new_model:
            evict(self.root, keep=MAX_MODELS)

    def touch(self) -> None:
        """Mark this model's folder as recently used (eviction removes the least recently used)."""
        with contextlib.suppress(OSError):
            os.utime(self.folder)


def evict(root: Path, keep: int = MAX_MODELS) -> list[Path]:
    """Remove all but the ``keep`` most recently used fingerprint folders; returns what was removed."""
    try:
        folders = [p for p in root.iterdir() if p.is_dir()]
    except OSError:
        return []
    folders.sort(key=lambda p: _mtime(p), reverse=True)
    removed = folders[keep:]
    for folder in removed:
        shutil.rmtree(folder, ignore_errors=True)
    return removed


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def cached_embeddings(model: torch.nn.Module, tokenizer: Any, classnames: Sequence[str],
                      prompts_of: Callable[[str], list[str]],
                      compute: Callable[[list[str]], torch.Tensor]) -> torch.Tensor:
    """(C, D) rows for ``classnames``: stored ones read, missing ones computed by ``compute`` and stored.

    Args:
        prompts_of: a class name -> its filled prompts (what its embedding depends on).
        compute: missing class names -> their (n, D) unit-norm rows, in order.
    """
    cache = TextCache(model, tokenizer)
    keys = [cache.key(prompts_of(name)) for name in classnames]
    rows: dict[str, torch.Tensor] = {}
    for key in dict.fromkeys(keys):
        found = cache.read(key)
        if found is not None:
            rows[key] = found
    names = {key: name for key, name in zip(keys, classnames) if key not in rows}
    if names:
        computed = compute(list(names.values()))
        for (key, name), row in zip(names.items(), computed):
            rows[key] = row.float().cpu()
            cache.write(key, rows[key], name)
    if len(names) < len(set(keys)):
        cache.touch()
    device = next(model.parameters()).device
    return torch.stack([rows[key] for key in keys]).to(device)
