"""Which trained heads the page can offer, and what it does with each: a registry of head uses.

A head file says its kind (``heads.read_head_info``); the kind's registered module class says what the
head can do. Each ``HeadUse`` recognises the classes it can run (by class, never by kind name) and
changes the page's analysis accordingly, so a new head kind of an existing family (another detector,
another segmenter, another adapter) appears on the page with no change here.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
import torchvision.transforms.functional as TF
from torch import nn

from ..errors import ClipDenseError, ConfigError
from ..heads import HEAD_FILE, HeadInfo, find_head_kind, known_head_kinds, read_head_info
from .results import Analysis

#: files looked at per heads folder (a big runs/ folder should not stall the page's start)
MAX_HEAD_FILES = 2000


@dataclass(frozen=True)
class HeadUse:
    """One thing the page does with a kind of head.

    Args:
        name: what the page calls it ("segmentation", "detection", "classification").
        accepts: ``module class -> bool``: the registered head classes this use runs.
        apply: ``(bundle, head, analysis) -> analysis`` with this head's output in place of the zero-shot one.
    """

    name: str
    accepts: Callable[[type[nn.Module]], bool]
    apply: Callable[[Any, nn.Module, Analysis], Analysis]


def _is(base_path: str, name: str) -> Callable[[type[nn.Module]], bool]:
    """``issubclass(cls, base)`` with the base imported on first use (head families import torchvision etc.)."""
    def accepts(cls: type[nn.Module]) -> bool:
        return issubclass(cls, getattr(importlib.import_module(base_path), name))
    return accepts


@torch.no_grad()
def _segment_with(bundle: Any, head: nn.Module, analysis: Analysis) -> Analysis:
    """A trained segmenter's class probabilities at the image's size replace the zero-shot ones."""
    from ..tasks.images import dense_input
    side = int(getattr(head.config, "image_size", 0) or min(bundle.image_size))
    images = dense_input(bundle.model, analysis.image, side).to(bundle.device)
    scores = head.segment_logits(images, analysis.classes)
    scores = torch.nn.functional.interpolate(scores, size=(analysis.image.height, analysis.image.width),
                                             mode="bilinear", align_corners=False)
    return replace(analysis, probabilities=head.probabilities(scores)[0].cpu())


@torch.no_grad()
def _detect_with(bundle: Any, head: nn.Module, analysis: Analysis) -> Analysis:
    """A detector's boxes (any class names) replace the segmentation on the overlay."""
    from ..tasks.detect import detect
    found = detect(bundle, TF.to_tensor(analysis.image), analysis.classes, head=head)
    return replace(analysis, probabilities=None, detections=found)


@torch.no_grad()
def _classify_with(bundle: Any, head: nn.Module, analysis: Analysis) -> Analysis:
    """A few-shot adapter ranks the classes for the whole image instead of zero-shot CLIP."""
    from ..tasks.classify import classify
    probs = classify(bundle, analysis.image, analysis.classes, adapter=head)
    return replace(analysis, ranking=dict(zip(analysis.classes, probs.tolist())))


@torch.no_grad()
def _answer_with(bundle: Any, head: nn.Module, analysis: Analysis) -> Analysis:
    """A GLIPv2 head with a VQA part answers the prompt field's question: its top answers with their scores take the
    'whole image' ranking's place (the overlay keeps the zero-shot segmentation)."""
    from ..tasks.vqa import answer
    found = answer(bundle, TF.to_tensor(analysis.image), analysis.heatmap_prompt, head=head, top=5)
    note = f"answered the question {found.question!r}: {found.answers[0]} ({found.scores[0]:.2f})"
    return replace(analysis, ranking=dict(zip(found.answers, found.scores)), notes=(*analysis.notes, note))


@torch.no_grad()
def _ground_with(bundle: Any, head: nn.Module, analysis: Analysis) -> Analysis:
    """A GLIP head grounds the prompt field's sentence: each noun phrase's best boxes (and masks, from a head with
    GLIPv2's mask branch), in the phrase's colour and labelled with its words, replace the segmentation on the overlay. A question (ending in '?') to a head with a
    VQA part is answered instead (``_answer_with``)."""
    from ..heads.grounding.vqa import has_vqa
    from ..tasks.detect import Detections
    from ..tasks.ground import ground, keep_best
    if has_vqa(head) and analysis.heatmap_prompt.strip().endswith("?"):
        return _answer_with(bundle, head, analysis)
    found = keep_best(ground(bundle, TF.to_tensor(analysis.image), analysis.heatmap_prompt, head=head), top=2)
    boxes = [p.boxes for p in found.phrases]
    labels = [torch.full((len(p.boxes),), i, dtype=torch.long) for i, p in enumerate(found.phrases)]
    masks = torch.cat([p.masks for p in found.phrases]) if all(p.masks is not None for p in found.phrases) else None
    detections = Detections(torch.cat(boxes), torch.cat([p.scores for p in found.phrases]), torch.cat(labels),
                            [p.text for p in found.phrases], masks)   # GLIPv2 mask head: tinted in the phrase's colour
    note = f"grounded the sentence {found.sentence!r}: phrases " + ", ".join(p.text for p in found.phrases)
    return replace(analysis, probabilities=None, detections=detections, notes=(*analysis.notes, note))


HEAD_USES: list[HeadUse] = [
    HeadUse("segmentation", _is("clipdense.heads.segmentation", "SegmentationHead"), _segment_with),
    # a panoptic mask generator on the page: its queries' semantic inference (the same segment_logits interface)
    HeadUse("panoptic segmentation", _is("clipdense.heads.segmentation", "PanopticHead"), _segment_with),
    HeadUse("detection", _is("clipdense.heads.detection", "Detector"), _detect_with),
    HeadUse("classification", _is("clipdense.heads.adapters", "Adapter"), _classify_with),
    # a GLIP head grounds the sentence typed as the heatmap prompt (its phrases' boxes in their colours)
    HeadUse("grounding", _is("clipdense.heads.grounding", "GLIPHead"), _ground_with),
]


def use_for_kind(kind_name: str) -> HeadUse | None:
    """The page's use of heads of the registered kind ``kind_name`` (None: unknown kind or nothing to do)."""
    kind = find_head_kind(kind_name)
    if kind is None:
        return None
    return next((use for use in HEAD_USES if use.accepts(kind.module_type)), None)


def available_uses() -> list[str]:
    """Names of the uses some registered head kind can serve (what this installation can show)."""
    names = []
    for kind_name in known_head_kinds():
        use = use_for_kind(kind_name)
        if use is not None and use.name not in names:
            names.append(use.name)
    return names


@dataclass(frozen=True)
class HeadChoice:
    """A head file found for the page, with what it is and what the page does with it."""

    path: Path
    info: HeadInfo
    use: HeadUse

    @property
    def label(self) -> str:
        classes = f", {len(self.info.classes)} classes" if self.info.classes else ""
        return f"{self.use.name}: {self.path} ({self.info.kind}{classes}; trained on {self.info.backbone.spec()})"


def _candidates(folder: Path) -> Iterable[Path]:
    """Head files under ``folder``: loose ``*.safetensors`` and the latest head of each run."""
    if folder.is_file():
        yield folder
        return
    runs: dict[Path, Path] = {}
    for count, path in enumerate(sorted(folder.rglob("*.safetensors"))):
        if count >= MAX_HEAD_FILES:
            break
        if path.name == HEAD_FILE and path.parent.name.startswith("step-") and path.parent.parent.name == "checkpoints":
            runs[path.parent.parent.parent] = path      # sorted: the last one is the latest step
        else:
            yield path
    yield from runs.values()


def discover_heads(folders: Iterable[str | os.PathLike]) -> list[HeadChoice]:
    """Every head file under ``folders`` that the page has a use for (other files are skipped quietly)."""
    found: dict[Path, HeadChoice] = {}
    for folder in folders:
        folder = Path(folder)
        if not folder.exists():
            continue
        for path in _candidates(folder):
            try:
                info = read_head_info(path)
            except ClipDenseError as exc:
                if folder.is_file():          # a file named on its own is refused, not counted as "0 heads found"
                    raise ConfigError(f"--heads {folder}: not a head file ({' '.join(str(exc).split())})") from None
                continue                      # a model file, a damaged head, another clipdense format
            use = use_for_kind(info.kind)
            if use is None and folder.is_file():
                raise ConfigError(f"--heads {folder}: a {info.kind} head, which the page cannot use (it shows "
                                  f"{', '.join(available_uses())} heads)")
            if use is not None:
                found.setdefault(path.resolve(), HeadChoice(path, info, use))
    return list(found.values())
