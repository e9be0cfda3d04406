"""Segment and classify with an exported folder (``export.export_onnx``) on onnxruntime, no torch model loaded.

    exported = ExportedModel("export/")
    labels = segment_onnx(exported, "photo.png", ["cat", "dog"], mode="maskclip")
    probs = classify_onnx(exported, "photo.png", ["cat", "dog"])

The arithmetic after the graphs is the torch path's own (``sliding_window``, ``class_probabilities``,
``labels_from_probabilities``), so the two runtimes differ only by what the graphs compute. Class names are
embedded by ``classes.npy`` when they are the exported classes, else by ``text.onnx`` with the model's tokenizer
(open_clip's SimpleTokenizer; an export with another tokenizer takes only its exported classes).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF

from ..errors import ConfigError, ModelLoadError
from ..models.text import Template, resolve_templates
from .export import MANIFEST
from .images import ImageLike, as_pil, bounded_size, check_dense_settings, one_image
from .segment import class_probabilities, labels_from_probabilities, sliding_window


class ExportedModel:
    """The graphs of one export folder, each opened on first use with onnxruntime's CPU provider."""

    def __init__(self, folder: str | os.PathLike, threads: int | None = None) -> None:
        self.folder = Path(folder)
        path = self.folder / MANIFEST
        if not path.is_file():
            raise ModelLoadError(f"{self.folder}: no {MANIFEST}; export one with `clipdense export MODEL --format onnx "
                                 "--out DIR`")
        self.manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        self.threads = threads
        self._sessions: dict[str, Any] = {}

    def session(self, name: str) -> Any:
        """The onnxruntime session of graph file ``name``."""
        if name not in self._sessions:
            try:
                import onnxruntime as ort
            except ImportError:
                raise ConfigError("--runtime onnx needs onnxruntime: pip install 'clipdense[export]'") from None
            if not (self.folder / name).is_file():
                raise ModelLoadError(f"{self.folder}: has no {name} (exported: {', '.join(self.manifest['files'])})")
            options = ort.SessionOptions()
            if self.threads:
                options.intra_op_num_threads = self.threads
            self._sessions[name] = ort.InferenceSession(str(self.folder / name), options,
                                                        providers=["CPUExecutionProvider"])
        return self._sessions[name]

    def check_mode(self, mode: str) -> None:
        if mode not in self.manifest["modes"]:
            raise ConfigError(f"--mode {mode}: {self.folder} holds the dense modes {self.manifest['modes']}; "
                              f"export it with --modes {mode}")

    def dense(self, images: torch.Tensor, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Unit-norm dense map (B, D, h, w) and image embedding (B, D) of normalised ``images``."""
        self.check_mode(mode)
        dense, embedding = self.session(f"image-{mode}.onnx").run(None, {"images": images.float().cpu().numpy()})
        return torch.from_numpy(dense), torch.from_numpy(embedding)

    def text_classifier(self, classes: Sequence[str], templates: str | Sequence[Template] = "imagenet"
                        ) -> torch.Tensor:
        """(C, D) unit-norm class embeddings: the exported ones, else prompt means through ``text.onnx``."""
        m = self.manifest
        if m.get("classes") == list(classes) and m.get("templates") == templates:
            return torch.from_numpy(np.load(self.folder / "classes.npy"))
        if m.get("tokenizer") != "SimpleTokenizer":
            raise ConfigError(f"{self.folder}: its tokenizer ({m.get('tokenizer')}) does not run outside torch; "
                              f"use its exported classes {m.get('classes')} (templates {m.get('templates')!r})")
        from open_clip.tokenizer import SimpleTokenizer

        tokenizer = SimpleTokenizer(context_length=int(m["context_length"]))
        fill = resolve_templates(templates)
        rows = []
        for name in classes:
            tokens = tokenizer([t(name) for t in fill]).numpy().astype(np.int64)
            embedding = torch.from_numpy(self.session("text.onnx").run(None, {"tokens": tokens})[0])
            rows.append(F.normalize(embedding.mean(0), dim=-1))
        return torch.stack(rows)

    def normalise(self, picture: Any) -> torch.Tensor:
        """(3, H, W) normalised pixels of a PIL image, with the export's mean and std."""
        return TF.normalize(TF.to_tensor(picture), self.manifest["mean"], self.manifest["std"])


def _dense_input(exported: ExportedModel, image: ImageLike, short_side: int | None) -> tuple[torch.Tensor,
                                                                                             tuple[int, int]]:
    """As ``images.dense_input``: a tensor as is, a picture resized to ``short_side`` (default the export's
    input size) and normalised; and the original (H, W)."""
    if isinstance(image, torch.Tensor):
        tensor = image if image.ndim == 4 else image[None]
        return tensor, tuple(tensor.shape[-2:])
    pil = as_pil(image)
    size = bounded_size(pil.width, pil.height, short_side or min(exported.manifest["image_size"]))
    resized = pil if size == pil.size else TF.resize(pil, [size[1], size[0]],
                                                     interpolation=TF.InterpolationMode.BICUBIC)
    return exported.normalise(resized)[None], (pil.height, pil.width)


def segment_onnx(exported: ExportedModel, image: ImageLike, classes: Sequence[str], mode: str = "maskclip",
                 templates: str | Sequence[Template] = "imagenet", short_side: int | None = None,
                 window: int | None = None, background_threshold: float | None = None) -> torch.Tensor:
    """(H, W) int64 label map, as ``segment`` computes it, with the exported graphs."""
    if not classes:
        raise ConfigError("classes: empty list")
    check_dense_settings(short_side, window, background_threshold)
    exported.check_mode(mode)
    inputs, original = _dense_input(exported, one_image(image, "segment"), short_side)
    classifier = exported.text_classifier(classes, templates)

    def scores(crop: torch.Tensor) -> torch.Tensor:
        dense = exported.dense(crop, mode)[0]
        logits = torch.einsum("bdhw,cd->bchw", dense, classifier)
        return F.interpolate(logits, size=crop.shape[-2:], mode="bilinear", align_corners=False)

    logits = sliding_window(scores, inputs, len(classes), window)
    logits = F.interpolate(logits, size=original, mode="bilinear", align_corners=False)
    return labels_from_probabilities(class_probabilities(logits), background_threshold)[0]


def classify_onnx(exported: ExportedModel, image: ImageLike, classes: Sequence[str],
                  templates: str | Sequence[Template] = "imagenet") -> torch.Tensor:
    """(C,) class probabilities, as ``classify`` computes them, with the exported graphs (the image is resized and
    centre-cropped to the export's input size, as open_clip's preprocessing)."""
    if not classes:
        raise ConfigError("classes: empty list")
    image = one_image(image, "classify")
    if isinstance(image, torch.Tensor):
        tensor = image if image.ndim == 4 else image[None]
    else:
        from open_clip.transform import image_transform

        m = exported.manifest
        transform = image_transform(tuple(m["image_size"]), is_train=False, mean=tuple(m["mean"]),
                                    std=tuple(m["std"]), resize_mode=m["resize_mode"], interpolation=m["interpolation"])
        tensor = transform(as_pil(image))[None]
    embedding = exported.dense(tensor, exported.manifest["modes"][0])[1]
    classifier = exported.text_classifier(classes, templates)
    return (exported.manifest["logit_scale"] * embedding @ classifier.T).softmax(dim=-1)[0]
