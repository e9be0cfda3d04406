"""The head file: one safetensors file that says what it holds and which backbone it belongs to.

Metadata (all strings, as safetensors requires)::

    clipdense.format            "head"            (a model file has clipdense.model_name instead)
    clipdense.format_version    "1"
    clipdense.head.kind         registered kind, e.g. "adapter/coop"
    clipdense.head.config       JSON: the architecture config its kind rebuilds it from
    clipdense.head.classes      JSON list: the class vocabulary (absent when the head has none)
    clipdense.backbone.name     backbone spec: model name ...
    clipdense.backbone.pretrained   ... and pretrained tag/path ("" when none)
    clipdense.backbone.fingerprint  ``model_fingerprint`` of the backbone's weights
    clipdense.head.digest       SHA-256 of all the other metadata: an edited or damaged header is refused

A head only means something on the weights it was trained with, so ``load_head`` refuses any other
backbone, even one with the same name (two random inits, two fine-tunes).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from safetensors.torch import load_file, save
from torch import nn

from ..config import atomic_write_bytes
from ..errors import ClipDenseError, ConfigError, ModelLoadError
from ..models.weights import (META_FORMAT, META_MODEL_NAME, load_into, model_fingerprint, portable_state_dict,
                              read_metadata)
from .registry import find_head_kind, kind_of, known_head_kinds

FORMAT_KEY, FORMAT = META_FORMAT, "head"
VERSION_KEY, VERSION = "clipdense.format_version", 1
KIND_KEY = "clipdense.head.kind"
CONFIG_KEY = "clipdense.head.config"
CLASSES_KEY = "clipdense.head.classes"
BACKBONE_NAME_KEY = "clipdense.backbone.name"
BACKBONE_PRETRAINED_KEY = "clipdense.backbone.pretrained"
BACKBONE_FINGERPRINT_KEY = "clipdense.backbone.fingerprint"
DIGEST_KEY = "clipdense.head.digest"
#: what a run checkpoint calls its exported head (a model export is model.safetensors)
HEAD_FILE = "head.safetensors"
#: formats this loader recognises but does not read, and what to do instead
RETIRED_FORMATS = {"adapter-v1": "an adapter file in the retired adapter-v1 format; re-run `clipdense adapt` "
                                 "to save it as a head"}


@dataclass(frozen=True)
class Backbone:
    """The backbone a head was trained on: its spec (name + pretrained) and its weights' fingerprint."""

    name: str
    pretrained: str | None
    fingerprint: str

    @classmethod
    def of(cls, bundle: Any) -> "Backbone":
        """Describe a loaded ``Bundle`` (fingerprints its weights now)."""
        pretrained = None if bundle.pretrained in (None, "") else str(bundle.pretrained)
        return cls(str(bundle.name), pretrained, model_fingerprint(bundle.model))

    def spec(self) -> str:
        """How a user would load it: ``'ViT-B-16' pretrained 'openai'``."""
        return f"'{self.name}' " + (f"pretrained '{self.pretrained}'" if self.pretrained else "(no pretrained weights)")

    def flags(self) -> str:
        return f"--model {self.name}" + (f" --pretrained {self.pretrained}" if self.pretrained else "")


@dataclass(frozen=True)
class HeadInfo:
    """Everything a head file says about itself (read without building anything)."""

    path: Path
    kind: str
    config: dict[str, Any]
    classes: list[str] | None
    backbone: Backbone
    metadata: dict[str, str]


def metadata_digest(metadata: Mapping[str, str]) -> str:
    """SHA-256 of every metadata entry but the digest itself (canonical JSON)."""
    body = json.dumps({k: v for k, v in metadata.items() if k != DIGEST_KEY}, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()


def head_metadata(head: nn.Module, backbone: Backbone,
                  extra_metadata: Mapping[str, str] | None = None) -> dict[str, str]:
    """The header of ``head``'s file (kind, config, vocabulary, backbone, digest)."""
    kind = kind_of(head)
    try:
        config = json.dumps(kind.config_of(head), sort_keys=True)
    except TypeError as exc:
        raise ConfigError(f"{kind.name}: head config is not JSON ({exc})") from exc
    metadata = {FORMAT_KEY: FORMAT, VERSION_KEY: str(VERSION), KIND_KEY: kind.name, CONFIG_KEY: config,
                BACKBONE_NAME_KEY: backbone.name, BACKBONE_PRETRAINED_KEY: backbone.pretrained or "",
                BACKBONE_FINGERPRINT_KEY: backbone.fingerprint, **dict(extra_metadata or {})}
    classes = kind.classes_of(head)
    if classes is not None:
        metadata[CLASSES_KEY] = json.dumps(list(classes))
    metadata[DIGEST_KEY] = metadata_digest(metadata)
    return metadata


def save_head(head: nn.Module, path: str | os.PathLike, backbone: Any,
              extra_metadata: Mapping[str, str] | None = None) -> Path:
    """Atomically write ``head`` (a registered kind) as a head file.

    Args:
        head: the module; its whole state dict is the file's tensors.
        path: a ``.safetensors`` path.
        backbone: the ``Bundle`` it runs on (fingerprinted now) or an already taken ``Backbone``.
        extra_metadata: more string metadata (e.g. the training step).
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ConfigError(f"{path}: head files end in .safetensors")
    described = backbone if isinstance(backbone, Backbone) else Backbone.of(backbone)
    metadata = head_metadata(head, described, extra_metadata)
    atomic_write_bytes(path, save(portable_state_dict(head), metadata=metadata))
    return path


def latest_run_head(run_dir: Path) -> Path:
    """The newest ``checkpoints/step-*/head.safetensors`` of a run that trained a head."""
    found = sorted((run_dir / "checkpoints").glob(f"step-*/{HEAD_FILE}"))
    if not found:
        raise ModelLoadError(f"{run_dir}: no head checkpoints (checkpoints/step-*/{HEAD_FILE}); "
                             "a run that trains a CLIP model is loaded with load_model / --model")
    return found[-1]


def _what_else(path: Path, metadata: Mapping[str, str]) -> str:
    """One line saying what a file that is not a head is."""
    fmt = metadata.get(FORMAT_KEY)
    if fmt in RETIRED_FORMATS:
        return f"{path}: {RETIRED_FORMATS[fmt]}"
    if META_MODEL_NAME in metadata:
        return (f"{path}: a CLIP model file ('{metadata[META_MODEL_NAME]}' weights for load_model / --model), "
                "not a head")
    if fmt:
        return f"{path}: a clipdense '{fmt}' file, not a head"
    return f"{path}: not a clipdense head file (no '{FORMAT_KEY}: {FORMAT}' metadata)"


def _field(path: Path, metadata: Mapping[str, str], key: str, expected: type) -> Any:
    """A JSON metadata field of the expected type, else a one-line error naming it."""
    try:
        value = json.loads(metadata[key])
    except (KeyError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{path}: head metadata '{key}' is missing or not JSON") from exc
    if not isinstance(value, expected):
        raise ModelLoadError(f"{path}: head metadata '{key}' should be a JSON {expected.__name__}")
    return value


def read_head_info(path: str | os.PathLike) -> HeadInfo:
    """Read and check a head file's header (a run dir means its latest head checkpoint)."""
    path = Path(path)
    if path.is_dir():
        path = latest_run_head(path)
    if not path.is_file():
        raise ModelLoadError(f"{path}: head file not found")
    if path.suffix != ".safetensors":
        raise ModelLoadError(f"{path}: head files are .safetensors")
    metadata = read_metadata(path)
    if metadata.get(FORMAT_KEY) != FORMAT:
        raise ModelLoadError(_what_else(path, metadata))
    if metadata.get(VERSION_KEY) != str(VERSION):
        raise ModelLoadError(f"{path}: head format version {metadata.get(VERSION_KEY)!r}; this clipdense reads "
                             f"version {VERSION} (upgrade clipdense, or re-save the head)")
    if metadata.get(DIGEST_KEY) != metadata_digest(metadata):
        raise ModelLoadError(f"{path}: head metadata does not match its digest (the header was edited or "
                             "damaged); re-save the head")
    classes = _field(path, metadata, CLASSES_KEY, list) if CLASSES_KEY in metadata else None
    if classes is not None and not all(isinstance(c, str) for c in classes):
        raise ModelLoadError(f"{path}: head metadata '{CLASSES_KEY}' should be a list of class names")
    missing = [k for k in (KIND_KEY, BACKBONE_NAME_KEY, BACKBONE_FINGERPRINT_KEY) if not metadata.get(k)]
    if missing:
        raise ModelLoadError(f"{path}: head metadata lacks {missing}")
    backbone = Backbone(metadata[BACKBONE_NAME_KEY], metadata.get(BACKBONE_PRETRAINED_KEY) or None,
                        metadata[BACKBONE_FINGERPRINT_KEY])
    return HeadInfo(path, metadata[KIND_KEY], _field(path, metadata, CONFIG_KEY, dict), classes, backbone,
                    metadata)


def check_backbone(info: HeadInfo, bundle: Any) -> None:
    """Refuse a head on any backbone but the one it was trained on (same name and same weights)."""
    given = Backbone.of(bundle)
    if (given.name, given.fingerprint) == (info.backbone.name, info.backbone.fingerprint):
        return
    what = "other weights of the same model" if given.name == info.backbone.name else "another model"
    raise ModelLoadError(f"{info.path}: this {info.kind} head was trained on {info.backbone.spec()} (weights "
                         f"{info.backbone.fingerprint}); the given backbone {given.spec()} (weights "
                         f"{given.fingerprint}) is {what}; load the backbone it was trained on "
                         f"({info.backbone.flags()})")


def load_head(path: str | os.PathLike, bundle: Any) -> nn.Module:
    """Rebuild the head saved at ``path`` (or a run dir's latest) on ``bundle``, in eval mode.

    The backbone must be the one the head was trained on; any kind registered with
    ``register_head_kind`` is read.
    """
    info = read_head_info(path)
    check_backbone(info, bundle)
    kind = find_head_kind(info.kind)
    if kind is None:
        raise ModelLoadError(f"{info.path}: unknown head kind {info.kind!r}; known: {known_head_kinds()}")
    try:
        head = kind.build(info.config, bundle, info.classes)
    except (ClipDenseError, TypeError, ValueError) as exc:
        raise ModelLoadError(f"{info.path}: its {info.kind} config does not rebuild the head "
                             f"({str(exc).splitlines()[0]})") from exc
    load_into(head, load_file(str(info.path)), str(info.path))
    return head.to(bundle.device).eval()
