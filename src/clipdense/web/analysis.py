"""What the page computes for one request, apart from any web framework: checked inputs, loaded models,
zero-shot segmentation + heatmap + whole-image ranking, then the chosen head's own output.

Every user mistake is a ``ClipDenseError`` with one line the page shows; nothing here knows about Gradio,
so the same calls serve the page, its HTTP API and the tests.
"""
from __future__ import annotations

import os
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..data.images import open_image
from ..errors import ConfigError, ImageLoadError, ModelLoadError
from ..heads import load_head
from ..models import DENSE_MODES, load_model, text_classifier
from ..models.segmenters import segmenter_of
from ..models.text_cache import use_text_cache
from ..tasks.depth import DepthClipConfig, depth
from ..tasks.images import dense_input
from ..tasks.segment import class_probabilities, segment_logits
from .heads import HeadChoice
from .results import Analysis

#: most class names one request may name (each costs a pass of every prompt through the text tower)
MAX_CLASSES = 100
MAX_NAME_LENGTH = 200
#: models and heads kept loaded between requests
KEEP_MODELS = 2
KEEP_HEADS = 4


@dataclass(frozen=True)
class Request:
    """One press of the page's button (or one call of its HTTP API)."""

    image: str | os.PathLike | None
    classes: str
    model: str = "tiny-vit-t8"
    pretrained: str | None = "synthworld"
    mode: str = "maskclip"
    templates: str = "imagenet"
    head: str | None = None
    heatmap: str = ""


def parse_classes(text: str | None) -> list[str]:
    """Class names separated by commas or new lines; none, duplicates or too many are errors."""
    names = [name.strip() for name in re.split(r"[,\n]", text or "") if name.strip()]
    if not names:
        raise ConfigError("class names: type at least one, separated by commas (e.g. 'cat, dog, sofa')")
    if len(set(names)) != len(names):
        raise ConfigError(f"class names: each name once, got {names}")
    if len(names) > MAX_CLASSES:
        raise ConfigError(f"class names: at most {MAX_CLASSES} per request, got {len(names)}")
    if any(len(name) > MAX_NAME_LENGTH for name in names):
        raise ConfigError(f"class names: each at most {MAX_NAME_LENGTH} characters")
    return names


def read_photo(path: str | os.PathLike | None, max_side: int) -> tuple[Image.Image, list[str]]:
    """The uploaded photo as RGB, shrunk so its longer side is at most ``max_side`` (with a note saying so)."""
    if path is None or str(path) == "":
        raise ConfigError("photo: upload an image (or pick an example) first")
    try:
        image = open_image(path)
    except ImageLoadError as exc:        # non-images, broken files, decompression bombs: name the upload only
        raise ImageLoadError(f"photo {str(exc).replace(str(path), Path(path).name)}") from None
    notes = []
    if max(image.size) > max_side:
        scale = max_side / max(image.size)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        notes.append(f"photo resized from {image.width}x{image.height} to {size[0]}x{size[1]} "
                     f"(the page's largest side is {max_side} px)")
        image = image.resize(size, Image.BICUBIC)
    return image, notes


class Models:
    """Loaded backbones and heads, the most recently used kept (loading a ViT-B takes seconds)."""

    def __init__(self, device: str | None = None) -> None:
        self.device = device
        self._bundles: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._heads: OrderedDict[tuple[str, float, int], nn.Module] = OrderedDict()

    def bundle(self, model: str, pretrained: str | None) -> Any:
        key = (model.strip(), (pretrained or "").strip())
        if not key[0]:
            raise ConfigError("model: name a model (e.g. tiny-vit-t8, ViT-B-16, a .safetensors file or a run dir)")
        if key not in self._bundles:
            self._bundles[key] = load_model(key[0], key[1] or None, self.device)
        self._bundles.move_to_end(key)
        while len(self._bundles) > KEEP_MODELS:
            self._bundles.popitem(last=False)
            self._heads.clear()           # heads hold their backbone
        return self._bundles[key]

    def head(self, path: Path, bundle: Any) -> nn.Module:
        try:
            key = (str(path.resolve()), path.stat().st_mtime, id(bundle))
        except OSError as exc:
            raise ModelLoadError(f"{path}: head file not readable ({exc.strerror})") from exc
        if key not in self._heads:
            self._heads[key] = load_head(path, bundle)
        self._heads.move_to_end(key)
        while len(self._heads) > KEEP_HEADS:
            self._heads.popitem(last=False)
        return self._heads[key]


class Analyser:
    """Runs requests one at a time (the models are shared and the CPU is not worth splitting)."""

    def __init__(self, heads: Sequence[HeadChoice] = (), device: str | None = None, max_side: int = 1024,
                 text_cache: bool = True) -> None:
        self.heads = {str(choice.path): choice for choice in heads}
        self.models = Models(device)
        self.max_side = max_side
        self.text_cache = text_cache
        self._lock = threading.Lock()

    def __call__(self, request: Request) -> Analysis:
        classes = parse_classes(request.classes)
        if request.mode not in DENSE_MODES:
            raise ConfigError(f"dense mode: one of {sorted(DENSE_MODES)}, got {request.mode!r}")
        choice = self._head_choice(request.head)
        image, notes = read_photo(request.image, self.max_side)
        with self._lock, use_text_cache(self.text_cache):
            bundle = self.models.bundle(request.model, request.pretrained)
            head = self.models.head(choice.path, bundle) if choice is not None else None
            analysis = zero_shot(bundle, image, classes, request.mode, request.templates,
                                 request.heatmap.strip() or classes[0])
            analysis = with_depth(bundle, analysis, request.mode)
            if choice is not None:
                start = time.perf_counter()
                analysis = choice.use.apply(bundle, head, analysis)
                analysis.seconds["head"] = time.perf_counter() - start
        model = request.model + (f" ({request.pretrained})" if request.pretrained else "")
        return replace(analysis, model=model, head=choice.label if choice else None,
                       notes=tuple(notes) + analysis.notes)

    def _head_choice(self, head: str | None) -> HeadChoice | None:
        if head in (None, "", "none"):
            return None
        if head not in self.heads:
            raise ConfigError(f"head: {head!r} is not one of the heads this page found "
                              f"({len(self.heads)} found; `clipdense serve --heads DIR` looks for more)")
        return self.heads[head]


def with_depth(bundle: Any, analysis: Analysis, mode: str) -> Analysis:
    """The photo's DepthCLIP depth (metres) in the same dense mode and at the same side as the segmentation; a
    model that segments by itself (GroupViT) has no dense mode to read it by, and says so in a note."""
    if segmenter_of(bundle.model) is not None:
        return replace(analysis, notes=analysis.notes + ("no depth map: this model segments by itself",))
    start = time.perf_counter()
    side = getattr(bundle, "dense_size", None) or min(bundle.image_size)
    metres = depth(bundle, analysis.image, DepthClipConfig(mode=mode, short_side=side))
    return replace(analysis, depth=metres, seconds={**analysis.seconds, "depth": time.perf_counter() - start})


@torch.no_grad()
def zero_shot(bundle: Any, image: Image.Image, classes: list[str], mode: str, templates: str,
              prompt: str) -> Analysis:
    """Per-pixel class probabilities, the heatmap of ``prompt`` and the whole-image ranking, from one
    dense forward (the prompt rides along as one more row of the text classifier)."""
    model = bundle.model
    side = getattr(bundle, "dense_size", None) or min(bundle.image_size)
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    rows = text_classifier(bundle, classes if prompt in classes else [*classes, prompt], templates)
    seconds["text"] = time.perf_counter() - start
    start = time.perf_counter()
    images = dense_input(model, image, side).to(bundle.device)
    logits = segment_logits(model, images, rows, mode)
    logits = F.interpolate(logits, size=(image.height, image.width), mode="bilinear", align_corners=False)[0]
    probabilities = class_probabilities(logits[:len(classes)], dim=0).cpu()   # the background rule's input
    scale = float(model.logit_scale.exp())
    heatmap = logits[classes.index(prompt) if prompt in classes else len(classes)].cpu()
    features = F.normalize(model.encode_image(bundle.preprocess(image)[None].to(bundle.device)).float(), dim=-1)
    ranking = (scale * features @ rows[:len(classes)].T).softmax(dim=-1)[0].cpu()
    seconds["image"] = time.perf_counter() - start
    return Analysis(image, classes, probabilities, dict(zip(classes, ranking.tolist())), heatmap, prompt,
                    model="", seconds=seconds)
