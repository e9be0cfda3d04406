"""ONNX export: the image tower in dense modes, the text tower, a text classifier and segmentation heads, as
separate graphs in one folder that ``onnx_runtime.ExportedModel`` reads back with onnxruntime.

    DIR/image-<mode>.onnx   images (B, 3, H, W) normalised -> dense (B, D, H/p, W/p), image_embedding (B, D); unit norm.
                            B, H and W are dynamic (positional embeddings are interpolated inside the graph)
    DIR/text.onnx           tokens (N, L) int64 -> text_embedding (N, D), unit norm (tokenise with the model's tokenizer)
    DIR/classes.npy         (C, D) float32 text classifier of --classes (prompt ensemble), names in classes.txt
    DIR/head.onnx           a segmentation head: images, text (T, P, D) -> scores (B, T, h, w); its text features
                            of the classes in head-text.npy
    DIR/export.json         what the graphs are: model, weights fingerprint, modes, preprocessing, logit scale

Why torch's dynamo exporter (``torch.onnx.export(..., dynamo=True)``): it traces the shapes symbolically, so one
graph takes any image size; the TorchScript tracer bakes the example's grid into the positional interpolation.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from open_clip import get_model_preprocess_cfg

from ..config import atomic_write_bytes
from ..errors import ConfigError
from ..models.dense import DENSE_MODES, dense_forward, tower_facts
from ..models.text import Template, text_classifier
from ..models.weights import model_fingerprint

MANIFEST = "export.json"
FORMAT_VERSION = 1


class DenseImageGraph(torch.nn.Module):
    """The image tower in one dense mode: unit-norm dense map and image embedding."""

    def __init__(self, model: torch.nn.Module, mode: str) -> None:
        super().__init__()
        self.model, self.mode = model, mode

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = dense_forward(self.model, images, self.mode)
        return F.normalize(out.dense, dim=1), F.normalize(out.image_embed, dim=-1)


class TextGraph(torch.nn.Module):
    """The text tower: unit-norm embeddings of tokenised prompts."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.model.encode_text(tokens).float(), dim=-1)


class HeadGraph(torch.nn.Module):
    """A segmentation head's forward: scores (B, T, h, w) of images for text features (T, P, D)."""

    def __init__(self, head: torch.nn.Module) -> None:
        super().__init__()
        self.head = head

    def forward(self, images: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return self.head(images, text).float()


@dataclass
class ExportResult:
    """The files written and the graphs left out (name -> why)."""

    folder: Path
    files: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def _export(module: torch.nn.Module, example: tuple[torch.Tensor, ...], path: Path, inputs: list[str],
            outputs: list[str], dynamic: dict[str, dict[int, Any]]) -> None:
    """One graph with torch's dynamo exporter, written atomically (weights inside the file)."""
    try:
        import onnxscript  # noqa: F401  (the dynamo exporter needs it; say so in one line)
    except ImportError:
        raise ConfigError("ONNX export needs the export extra: pip install 'clipdense[export]'") from None
    with contextlib.redirect_stdout(io.StringIO()):   # the exporter prints its steps even when not verbose
        program = torch.onnx.export(module.eval(), example, None, input_names=inputs, output_names=outputs,
                                    dynamic_shapes=dynamic, dynamo=True, verbose=False)
    partial = path.with_name(f".{path.name}.partial")
    try:
        program.save(str(partial))   # then renamed: a kill leaves the old graph or the new one, never half
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _image_example(bundle: Any) -> torch.Tensor:
    """Two images at twice the patch grid's side (not the native grid, so the interpolation is traced)."""
    patch = tower_facts(bundle.model).patch_size
    side = max(min(bundle.image_size), 2 * patch[0])
    return torch.randn(2, 3, side + patch[0], side, device=bundle.device)


@torch.no_grad()
def export_onnx(bundle: Any, out: str | Path, modes: Sequence[str] = ("maskclip",),
                classes: Sequence[str] | None = None, templates: str | Sequence[Template] = "imagenet",
                head: torch.nn.Module | None = None, text: bool = True) -> ExportResult:
    """Write the graphs of ``bundle`` (and ``head``) into the folder ``out`` (see the module's docstring)."""
    from torch.export import Dim

    unknown = [mode for mode in modes if mode not in DENSE_MODES]
    if unknown or not modes:
        raise ConfigError(f"modes {list(modes)}: expected dense modes among {sorted(DENSE_MODES)}")
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"--out {folder}: is a file, expected a folder")
    folder.mkdir(parents=True, exist_ok=True)
    result = ExportResult(folder)
    model = bundle.model.eval()
    example = _image_example(bundle)
    image_dims = {"images": {0: Dim.AUTO, 2: Dim.AUTO, 3: Dim.AUTO}}
    for mode in modes:
        name = f"image-{mode}.onnx"
        _export(DenseImageGraph(model, mode), (example,), folder / name, ["images"], ["dense", "image_embedding"],
                image_dims)
        result.files.append(name)
    tokens = bundle.tokenizer(["a photo of a cat.", "a dog."]).to(bundle.device)
    if text:
        _export(TextGraph(model), (tokens,), folder / "text.onnx", ["tokens"], ["text_embedding"],
                {"tokens": {0: Dim.AUTO}})
        result.files.append("text.onnx")
    if classes:
        classifier = text_classifier(bundle, list(classes), templates).float().cpu().numpy()
        atomic_write_bytes(folder / "classes.npy", _npy(classifier))
        atomic_write_bytes(folder / "classes.txt", ("\n".join(classes) + "\n").encode())
        result.files += ["classes.npy", "classes.txt"]
    head_info = _export_head(head, classes, example, folder, result) if head is not None else None
    manifest = _manifest(bundle, modes, classes, templates, head_info, result)
    atomic_write_bytes(folder / MANIFEST, json.dumps(manifest, indent=1).encode())
    result.files.append(MANIFEST)
    return result


def _export_head(head: torch.nn.Module, classes: Sequence[str] | None, example: torch.Tensor, folder: Path,
                 result: ExportResult) -> dict[str, Any] | None:
    """head.onnx and its text features of ``classes``; a head the exporter cannot take is named in ``skipped``."""
    from torch.export import Dim

    from ..heads import kind_of

    kind = kind_of(head).name
    names = list(classes or getattr(head, "classes", None) or [])
    if not hasattr(head, "text_features") or not names:
        result.skipped["head.onnx"] = f"{kind}: only segmentation heads with classes are exported"
        return None
    head = head.eval()
    text = head.text_features(names).float()
    side = int(head.config.image_size)
    images = example[:, :, :side + example.shape[-2] - example.shape[-1], :side]   # batch 2 (a 1 would be fixed)
    try:
        _export(HeadGraph(head), (images, text), folder / "head.onnx", ["images", "text"], ["scores"],
                {"images": {0: Dim.AUTO, 2: Dim.AUTO, 3: Dim.AUTO}, "text": {0: Dim.AUTO}})
    except ConfigError:
        raise
    except Exception as exc:   # noqa: BLE001 - the exporter's failures are many; the head is left out, said why
        result.skipped["head.onnx"] = f"{kind}: {_first_cause(exc)}"
        return None
    atomic_write_bytes(folder / "head-text.npy", _npy(text.cpu().numpy()))
    result.files += ["head.onnx", "head-text.npy"]
    return {"kind": kind, "image_size": side, "classes": names}


def _first_cause(exc: BaseException) -> str:
    """The root line of an exporter failure (its summary's first '<class ...>: message'), else its first line."""
    text = str(exc)
    found = re.search(r"<class '([\w.]+)'>: ([^\n]+)", text[text.find("Exception summary"):])
    return f"{found.group(1).rsplit('.', 1)[-1]}: {found.group(2)[:200]}" if found else text.splitlines()[0][:200]


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array.astype(np.float32))
    return buffer.getvalue()


def _manifest(bundle: Any, modes: Sequence[str], classes: Sequence[str] | None, templates: Any,
              head: dict[str, Any] | None, result: ExportResult) -> dict[str, Any]:
    cfg = get_model_preprocess_cfg(bundle.model)
    facts = tower_facts(bundle.model)
    return {"format": "clipdense.onnx", "version": FORMAT_VERSION, "model": bundle.name,
            "pretrained": bundle.pretrained, "fingerprint": model_fingerprint(bundle.model),
            "modes": list(modes), "image_size": list(bundle.image_size), "patch_size": list(facts.patch_size),
            "mean": list(cfg["mean"]), "std": list(cfg["std"]), "interpolation": cfg.get("interpolation", "bicubic"),
            "resize_mode": cfg.get("resize_mode", "shortest"),
            "logit_scale": float(bundle.model.logit_scale.exp()), "context_length": _context_length(bundle),
            "tokenizer": type(bundle.tokenizer).__name__,
            "classes": list(classes) if classes else None,
            "templates": templates if isinstance(templates, str) else None, "head": head,
            "files": list(result.files), "skipped": dict(result.skipped)}


def _context_length(bundle: Any) -> int:
    return int(getattr(bundle.tokenizer, "context_length", 77))
