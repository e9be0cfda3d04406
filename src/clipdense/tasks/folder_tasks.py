"""The folder forms of segment, classify and detect (``folder.FolderTask``): what each writes per image and at
the end.

- segment: ``OUT/<relative path>.png`` label maps (8-bit, 255 = background; 16-bit past 255 classes) and
  ``OUT/classes.txt`` (line i = label i, the ADE-style class file).
- classify: ``OUT/predictions.csv``: ``file`` then ``label_k``, ``probability_k`` for the top k classes.
- detect: ``OUT/detections.json``: COCO results (``image_id`` = 1 + the image's index in path order,
  ``category_id`` = 1 + class index) with ``file_name`` and ``category_name``.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Sequence

from PIL import Image

from ..config import atomic_write_bytes
from ..models.weights import model_fingerprint
from .batch import classify_batch, detect_batch, segment_batch
from .batching import DEFAULT_BATCH
from .folder import FolderTask
from .overlay import label_png


def _png_bytes(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def _label_file(relative: str) -> str:
    return str(PurePosixPath(relative).with_suffix(".png"))


@dataclass
class SegmentSettings:
    """The ``segment`` arguments a folder run passes on (and records: a resume must keep them)."""

    classes: list[str]
    mode: str = "maskclip"
    templates: str = "imagenet"
    short_side: int | None = None
    window: int | None = None
    background_threshold: float | None = None


class SegmentFolder(FolderTask):
    name = "segment"

    def __init__(self, bundle: Any, settings: SegmentSettings, head: Any = None, head_name: str | None = None,
                 batch_size: int = DEFAULT_BATCH) -> None:
        self.bundle, self.options, self.head, self.head_name = bundle, settings, head, head_name
        self.batch_size = batch_size

    def settings(self) -> dict[str, Any]:
        return {**asdict(self.options), "weights": model_fingerprint(self.bundle.model), "head": self.head_name}

    def run(self, images: list[Image.Image]) -> list[Any]:
        o = self.options
        return segment_batch(self.bundle, images, o.classes, o.mode, o.templates, o.short_side, o.window,
                             o.background_threshold, self.head, self.batch_size)

    def outputs(self, relatives: list[str]) -> dict[str, str]:
        return {rel: _label_file(rel) for rel in relatives}

    def save(self, out: Path, relative: str, image: Image.Image, result: Any) -> dict[str, Any]:
        target = _label_file(relative)
        atomic_write_bytes(out / target, _png_bytes(label_png(result)))
        return {"labels": target}

    def finish(self, out: Path, records: dict[str, dict[str, Any]]) -> list[Path]:
        path = out / "classes.txt"
        atomic_write_bytes(path, ("\n".join(self.options.classes) + "\n").encode())
        return [path]


class ClassifyFolder(FolderTask):
    name = "classify"

    def __init__(self, bundle: Any, classes: Sequence[str], templates: str = "imagenet", top: int = 5,
                 adapter: Any = None, adapter_name: str | None = None, batch_size: int = DEFAULT_BATCH) -> None:
        self.bundle, self.classes, self.templates, self.top = bundle, list(classes), templates, min(top, len(classes))
        self.adapter, self.adapter_name, self.batch_size = adapter, adapter_name, batch_size

    def settings(self) -> dict[str, Any]:
        return {"classes": self.classes, "templates": self.templates, "top": self.top,
                "weights": model_fingerprint(self.bundle.model), "adapter": self.adapter_name}

    def run(self, images: list[Image.Image]) -> list[Any]:
        return classify_batch(self.bundle, images, self.classes, self.templates, self.adapter, self.batch_size)

    def save(self, out: Path, relative: str, image: Image.Image, result: Any) -> dict[str, Any]:
        scores, indices = result.topk(self.top)
        return {"top": [[self.classes[i], round(float(p), 6)] for p, i in zip(scores.tolist(), indices.tolist())]}

    def finish(self, out: Path, records: dict[str, dict[str, Any]]) -> list[Path]:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["file"] + [f"{kind}_{k}" for k in range(1, self.top + 1)
                                    for kind in ("label", "probability")])
        for rel, record in records.items():
            writer.writerow([rel] + [value for pair in record["top"] for value in pair])
        path = out / "predictions.csv"
        atomic_write_bytes(path, buffer.getvalue().encode())
        return [path]


class DetectFolder(FolderTask):
    name = "detect"

    def __init__(self, bundle: Any, head: Any, head_name: str, classes: Sequence[str] | None = None,
                 min_score: float = 0.3, batch_size: int = DEFAULT_BATCH) -> None:
        self.bundle, self.head, self.head_name, self.min_score = bundle, head, head_name, min_score
        self.classes = list(head.classes if classes is None else classes)
        self.batch_size = batch_size

    def settings(self) -> dict[str, Any]:
        return {"classes": self.classes, "min_score": self.min_score, "head": self.head_name,
                "weights": model_fingerprint(self.bundle.model)}

    def run(self, images: list[Image.Image]) -> list[Any]:
        return detect_batch(self.bundle, images, self.classes, self.head, self.min_score, self.batch_size)

    def save(self, out: Path, relative: str, image: Image.Image, result: Any) -> dict[str, Any]:
        return {"detections": result.to_coco(0), "width": image.width, "height": image.height}

    def finish(self, out: Path, records: dict[str, dict[str, Any]]) -> list[Path]:
        results = [{**entry, "image_id": index + 1, "file_name": rel,
                    "category_name": self.classes[entry["category_id"] - 1]}
                   for index, (rel, record) in enumerate(records.items()) for entry in record["detections"]]
        path = out / "detections.json"
        atomic_write_bytes(path, json.dumps(results).encode())
        return [path]


class OnnxSegmentFolder(SegmentFolder):
    """``SegmentFolder`` on an exported folder's graphs (``--runtime onnx``): one image at a time."""

    def __init__(self, exported: Any, settings: SegmentSettings) -> None:
        self.exported, self.options, self.head, self.head_name = exported, settings, None, None

    @property
    def device(self) -> Any:
        return "cpu"

    def settings(self) -> dict[str, Any]:
        return {**asdict(self.options), "weights": self.exported.manifest["fingerprint"], "head": None,
                "runtime": "onnx"}

    def run(self, images: list[Image.Image]) -> list[Any]:
        from .onnx_runtime import segment_onnx

        o = self.options
        return [segment_onnx(self.exported, image, o.classes, o.mode, o.templates, o.short_side, o.window,
                             o.background_threshold) for image in images]


class OnnxClassifyFolder(ClassifyFolder):
    """``ClassifyFolder`` on an exported folder's graphs (``--runtime onnx``): one image at a time."""

    def __init__(self, exported: Any, classes: Sequence[str], templates: str = "imagenet", top: int = 5) -> None:
        self.exported, self.classes, self.templates = exported, list(classes), templates
        self.top, self.adapter, self.adapter_name = min(top, len(classes)), None, None

    @property
    def device(self) -> Any:
        return "cpu"

    def settings(self) -> dict[str, Any]:
        return {"classes": self.classes, "templates": self.templates, "top": self.top,
                "weights": self.exported.manifest["fingerprint"], "adapter": None, "runtime": "onnx"}

    def run(self, images: list[Image.Image]) -> list[Any]:
        from .onnx_runtime import classify_onnx

        return [classify_onnx(self.exported, image, self.classes, self.templates) for image in images]
