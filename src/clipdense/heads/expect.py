"""Artefact kinds checked at every entry (issue 32): where a task takes a head (``segment --head``, ``detect
--head``, ``classify --adapter``, ``--audio-tower``, ``eval --head``, ``export --head`` and their Python calls), the
file's header is read first and the wrong kind is refused in one line naming what was given and what was expected —
before a backbone loads. A role is a set of head classes, so a newly registered kind of the same class fits at once.

    info = expect_head("run/", "segmenter", "--head")   # HeadInfo, or ModelLoadError naming both kinds
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path

from typing import Any

from torch import nn

from ..errors import ConfigError, ModelLoadError
from .io import HeadInfo, load_head, read_head_info
from .registry import HEAD_KINDS, find_head_kind, known_head_kinds


@dataclass(frozen=True)
class Role:
    """What a task takes: ``what`` for messages, the head classes that fit (``module:Class``), how to make one, and
    what the task does with it (``verb``, for 'a detector/fvit head cannot segment')."""

    what: str
    bases: tuple[str, ...]
    hint: str
    verb: str

    def fits(self, kind: str) -> bool:
        """Whether the registered head kind ``kind`` is one of this role's classes."""
        found = find_head_kind(kind)
        return found is not None and issubclass(found.module_type, self.classes())

    def classes(self) -> tuple[type, ...]:
        return tuple(_class(base) for base in self.bases)

    def refusal(self, given: str, kind: str) -> str:
        """The one line for a head of ``kind`` given where this role is expected."""
        return (f"{given}: a {kind} head cannot {self.verb}; expected {self.what} ({', '.join(self.kinds())}): "
                f"{self.hint}")

    def kinds(self) -> list[str]:
        """The registered kinds that fit (for messages)."""
        return [name for name in known_head_kinds() if self.fits(name)]


def _class(path: str) -> type:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


_SEGMENTATION = "clipdense.heads.segmentation"
ROLES: dict[str, Role] = {
    "segmenter": Role("a segmentation head", (f"{_SEGMENTATION}:SegmentationHead", f"{_SEGMENTATION}:PanopticHead"),
                      "train one with `clipdense train --objective catseg|lseg|mask2former`", "segment"),
    "semantic": Role("a Cat-Seg / LSeg head", (f"{_SEGMENTATION}:SegmentationHead",),
                     "train one with `clipdense train --objective catseg|lseg`", "be evaluated by semantic mIoU"),
    "panoptic": Role("a panoptic head", (f"{_SEGMENTATION}:PanopticHead",),
                     "train one with `clipdense train --objective mask2former`", "segment panoptically"),
    "detector": Role("a detector head", ("clipdense.heads.detection:Detector", "clipdense.heads.grounding:GLIPHead"),
                     "train one with `clipdense train --objective fvit|vild|glip`", "detect"),
    "grounder": Role("a grounding head", ("clipdense.heads.grounding:GLIPHead",),
                     "train one with `clipdense train --objective glip`", "ground"),
    "vqa": Role("a GLIPv2 head with a VQA part", ("clipdense.heads.grounding:GLIPHead",),
                "train one with `clipdense train --objective glipv2 --objective-arg data=vqa`", "answer questions"),
    "adapter": Role("a few-shot adapter", ("clipdense.heads.adapters:Adapter",), "fit one with `clipdense adapt`",
                    "classify"),
    "audio": Role("an audio tower", ("clipdense.heads.audio:AudioHead",),
                  "train one with `clipdense train --objective audioclip`", "embed sounds"),
    "video": Role("a video head", ("clipdense.heads.video:VideoHead",),
                  "train one with `clipdense train --objective clip4clip|actionclip|videoclip`", "embed videos"),
    "vqgan": Role("a VQGAN", ("clipdense.models.vqgan:VQGAN",), "train one with `clipdense train --objective vqgan`",
                  "draw"),
}


def _not_a_head(path: Path) -> str | None:
    """What a folder given as a head is, when it holds no head (None: it holds one, or is not a folder)."""
    if not path.is_dir() or any((path / "checkpoints").glob("step-*/head.safetensors")):
        return None
    if any((path / "checkpoints").glob("step-*/model.safetensors")):
        return (f"a run folder that trained a CLIP model, not a head (its weights load with --model {path}, or "
                "load_model)")
    if (path / "checkpoints").is_dir() or (path / "config.yaml").is_file():
        return "a run folder with no head checkpoint yet (checkpoints/step-*/head.safetensors)"
    return "a folder that is neither a head file nor a run folder (no checkpoints/step-*/head.safetensors in it)"


def read_any_head(path: str | os.PathLike, given_as: str = "head", expected: str = "a head") -> HeadInfo:
    """The header of the head at ``path`` (a file or a run folder); what is not a head (nothing, a model file or
    run, another clipdense file, a damaged header) is one line naming ``given_as``, what it is and ``expected``."""
    source = Path(path)
    if not source.exists():
        raise ModelLoadError(f"{given_as} {source}: no such file or folder; expected {expected}")
    what = _not_a_head(source)
    if what is not None:
        raise ModelLoadError(f"{given_as} {source}: {what}; expected {expected}")
    try:
        return read_head_info(source)
    except ModelLoadError as exc:
        said = str(exc)
        said = said[len(str(source)) + 2:] if said.startswith(f"{source}: ") else said
        raise ModelLoadError(f"{given_as} {source}: {said}; expected {expected}") from None


def expect_head(path: str | os.PathLike, role: str, given_as: str = "head") -> HeadInfo:
    """The header of the head at ``path`` (a file or a run folder), refused in one line — naming ``given_as``
    (the flag or argument), what it is and what ``role`` expected — when it is not a head of that role."""
    wanted = ROLES[role]
    source = Path(path)
    info = read_any_head(source, given_as, wanted.what)
    if not wanted.fits(info.kind):
        raise ModelLoadError(wanted.refusal(f"{given_as} {source}", info.kind))
    return info


def load_expected(head: nn.Module | str | os.PathLike, bundle: Any, role: str, given_as: str = "head") -> nn.Module:
    """A loaded head of ``role``: a module is checked (ConfigError), a file or run folder is checked by its header
    (``expect_head``) and then loaded on ``bundle`` (which must hold the weights it was trained on)."""
    wanted = ROLES[role]
    if isinstance(head, nn.Module):
        if not isinstance(head, wanted.classes()):
            kinds = {kind.module_type: kind.name for kind in HEAD_KINDS.values()}
            raise ConfigError(wanted.refusal(given_as, kinds.get(type(head), type(head).__name__)))
        return head
    expect_head(head, role, given_as)
    return load_head(head, bundle)
