"""Classification of single images: zero-shot, or through a few-shot adapter head."""
from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Sequence

import torch
import torch.nn.functional as F

from ..data.media import media_kind
from ..errors import ConfigError
from ..models.text import Template, text_classifier
from .images import ImageLike, as_pil, one_image

if TYPE_CHECKING:
    from ..heads.adapters import Adapter

#: medium -> "module:function" under clipdense.tasks that classifies a file of it: ``(bundle, path, classes,
#: templates) -> (C,) probabilities``. Images are ``classify`` itself; families add theirs (points, audio, video).
FILE_CLASSIFIERS: dict[str, str] = {
    "points": "points:classify_point_file",
    "audio": "audio:classify_audio_file",
    "video": "video:classify_video_file",
}


@torch.no_grad()
def classify(bundle, image: ImageLike, classes: Sequence[str],
             templates: str | Sequence[Template] = "imagenet", adapter: Adapter | None = None) -> torch.Tensor:
    """(C,) class probabilities of one image (a path, PIL image or one-image tensor; a batch is refused):
    softmax of the model's scaled cosine similarities.

    With ``adapter`` (a few-shot head loaded on ``bundle``, e.g. ``load_adapter``) the adapter scores
    the classes instead of CLIP's text classifier (``templates`` is then unused).
    """
    if not classes:
        raise ConfigError("classes: empty list")
    if isinstance(image, (str, os.PathLike)) and media_kind(image) != "image":
        return _classify_file(bundle, image, classes, templates)
    image = one_image(image, "classify")
    tensor = image if isinstance(image, torch.Tensor) else bundle.preprocess(as_pil(image))
    tensor = (tensor if tensor.ndim == 4 else tensor[None]).to(bundle.device)
    if adapter is not None:
        return adapter.predict(tensor, list(classes))[0].cpu()
    features = F.normalize(bundle.model.encode_image(tensor).float(), dim=-1)
    classifier = text_classifier(bundle, classes, templates)
    logits = bundle.model.logit_scale.exp().float() * features @ classifier.T
    return logits.float().softmax(dim=-1)[0].cpu()   # autocast's matmul is bf16


def _classify_file(bundle, path: str | os.PathLike, classes: Sequence[str],
                   templates: str | Sequence[Template]) -> torch.Tensor:
    """A file of another medium, classified by the function its family registered."""
    kind = media_kind(path)
    if kind not in FILE_CLASSIFIERS:
        raise ConfigError(f"classify {path}: no classifier for {kind} files in this version of clipdense")
    module_name, function = FILE_CLASSIFIERS[kind].split(":")
    module = importlib.import_module(f"{__package__}.{module_name}")
    return getattr(module, function)(bundle, path, list(classes), templates)
