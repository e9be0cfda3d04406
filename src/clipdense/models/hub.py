"""Hugging Face hub access that fails in seconds when the hub is unreachable."""
from __future__ import annotations

import contextlib
import json
import logging
import socket
from pathlib import Path
from typing import Iterator, Sequence
from urllib.parse import urlparse

from ..errors import ModelLoadError


class _QuietRandomInit(logging.Filter):
    """open_clip warns on every random init; for tiny models that is the normal case."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "No pretrained weights loaded" not in record.getMessage()


@contextlib.contextmanager
def offline_when_unreachable() -> Iterator[None]:
    """Switch huggingface_hub (and transformers, which reads the same flag) to cache-only when its host
    does not resolve.

    Without this, each missing file costs a minute of retries before the same failure.
    """
    import huggingface_hub.constants as hub

    host = urlparse(hub.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.getaddrinfo(host, 443)
        reachable = True
    except OSError:
        reachable = False
    previous = hub.HF_HUB_OFFLINE
    hub.HF_HUB_OFFLINE = previous or not reachable
    quiet = _QuietRandomInit()
    logging.getLogger().addFilter(quiet)
    try:
        yield
    finally:
        hub.HF_HUB_OFFLINE = previous
        logging.getLogger().removeFilter(quiet)


def _hub_errors() -> tuple[type[BaseException], ...]:
    from huggingface_hub.errors import EntryNotFoundError

    return OSError, ValueError, EntryNotFoundError


def fetch_repo_files(repo_id: str, required: str, one_of: Sequence[str], optional: Sequence[str],
                     hint: str) -> Path:
    """Download ``required``, the first of ``one_of`` that exists (with its shards when it is an index) and
    whichever ``optional`` files exist; return the local snapshot folder.

    Args:
        repo_id: ``org/name`` on the hub.
        required: a file the repo must have (its folder is returned).
        one_of: alternatives in order of preference (safetensors before .bin).
        optional: files that may be absent.
        hint: what to tell the user when nothing can be fetched (how to pass a local folder).
    """
    from huggingface_hub import hf_hub_download

    errors = _hub_errors()
    with offline_when_unreachable():
        try:
            folder = Path(hf_hub_download(repo_id, required)).parent
        except errors as exc:
            raise ModelLoadError(f"could not fetch {repo_id} ({_first_line(exc)}); {hint}") from exc
        last: BaseException | None = None
        for name in one_of:
            try:
                path = Path(hf_hub_download(repo_id, name))
                for shard in _shards(path):
                    hf_hub_download(repo_id, shard)
            except errors as exc:
                last = exc
                continue
            break
        else:
            raise ModelLoadError(f"could not fetch weights of {repo_id}: none of {list(one_of)} "
                                 f"({_first_line(last)}); {hint}")
        for name in optional:
            with contextlib.suppress(*errors):
                hf_hub_download(repo_id, name)
    return folder


def _shards(path: Path) -> list[str]:
    """File names listed by a sharded checkpoint's ``*.index.json`` (none for a single file)."""
    if not path.name.endswith(".index.json"):
        return []
    return sorted(set(json.loads(path.read_text()).get("weight_map", {}).values()))


def _first_line(exc: BaseException | None) -> str:
    text = str(exc) if exc is not None else ""
    return text.splitlines()[0] if text else exc.__class__.__name__
