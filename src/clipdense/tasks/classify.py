"""Classification of single images: zero-shot, or through a few-shot adapter head."""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..models.text import Template, text_classifier
from .images import ImageLike, as_pil, one_image

if TYPE_CHECKING:
    from .adapters import Adapter


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
    image = one_image(image, "classify")
    tensor = image if isinstance(image, torch.Tensor) else bundle.preprocess(as_pil(image))
    tensor = (tensor if tensor.ndim == 4 else tensor[None]).to(bundle.device)
    if adapter is not None:
        return adapter.predict(tensor, list(classes))[0].cpu()
    features = F.normalize(bundle.model.encode_image(tensor).float(), dim=-1)
    classifier = text_classifier(bundle, classes, templates)
    logits = bundle.model.logit_scale.exp().float() * features @ classifier.T
    return logits.softmax(dim=-1)[0].cpu()
