"""Text classifiers: prompt-ensembled class embeddings in the joint space."""
from __future__ import annotations

from typing import Callable, Sequence, Union

import torch
import torch.nn.functional as F
from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES, SIMPLE_IMAGENET_TEMPLATES

from ..errors import ConfigError
from .text_cache import cached_embeddings, text_cache_enabled

Template = Union[str, Callable[[str], str]]
TEMPLATE_SETS: dict[str, Sequence[Template]] = {
    "imagenet": OPENAI_IMAGENET_TEMPLATES,  # the 80 prompts of CLIP's ImageNet evaluation
    "simple": SIMPLE_IMAGENET_TEMPLATES,     # the 18-prompt subset open_clip also ships
    "plain": ("{}",),
    # the phrasings of the synthetic world's captions, as CLIP's prompts mirror web captions
    "world": ("a {}.", "an image of a {}.", "a picture showing a {}.", "there is a {}."),
    "photo": ("a photo of a {}.",),
    # PointCLIP's prompt for depth views of point clouds (V1), and depth-map prompts standing in for V2's
    # GPT-written 3-D descriptions (offline)
    "pointclip": ("point cloud depth map of a {}.",),
    "pointclip-v2": ("a depth map of a {}.", "a grey depth image of a {}.", "a 3D model of a {}.",
                     "a rendering of a {} in grey.", "a silhouette of a {}."),
}


#: classes whose prompts go through the text tower (and into the cache) together: thousands of classes take one
#: chunk's prompt embeddings of memory at a time (80 prompts x 256 classes x 512 floats = 42 MB), and a call
#: interrupted midway keeps the chunks it already cached
CLASS_CHUNK = 256


def resolve_templates(templates: str | Sequence[Template]) -> list[Callable[[str], str]]:
    """Named set, a single '{}' template, or a list of templates/callables -> list of callables."""
    if isinstance(templates, str):
        if templates in TEMPLATE_SETS:
            templates = TEMPLATE_SETS[templates]
        elif "{}" in templates:
            templates = [templates]
        else:
            raise ConfigError(f"templates: '{templates}' is neither a set ({sorted(TEMPLATE_SETS)}) "
                              "nor a template containing '{}'")
    resolved = []
    for template in templates:
        if callable(template):
            resolved.append(template)
        elif isinstance(template, str) and "{}" in template:
            resolved.append(template.format)
        else:
            raise ConfigError(f"templates: each template needs a '{{}}' for the class name, got {template!r}")
    if not resolved:
        raise ConfigError("templates: empty list")
    return resolved


@torch.no_grad()
def text_classifier(bundle, classnames: Sequence[str], templates: str | Sequence[Template] = "imagenet",
                    batch_size: int = 256, cache: bool | None = None) -> torch.Tensor:
    """(C, D) unit-norm class embeddings: mean of the normalised embeddings of each class's prompts.

    Args:
        cache: read and write the on-disk cache of class embeddings (``models.text_cache``, keyed by the
            weights' fingerprint, the tokenizer and each class's prompts); None follows ``use_text_cache``.
    """
    if not classnames:
        raise ConfigError("classnames: empty list")
    fill = resolve_templates(templates)

    def compute(names: list[str]) -> torch.Tensor:
        return _encode_classes(bundle, names, fill, batch_size)

    names, use_cache = list(classnames), text_cache_enabled() if cache is None else cache
    rows = []
    for start in range(0, len(names), CLASS_CHUNK):   # a long vocabulary chunk by chunk (memory, and the cache)
        part = names[start:start + CLASS_CHUNK]
        rows.append(cached_embeddings(bundle.model, bundle.tokenizer, part, lambda name: [t(name) for t in fill],
                                      compute) if use_cache else compute(part))
    return rows[0] if len(rows) == 1 else torch.cat(rows)


def _encode_classes(bundle, classnames: list[str], fill: list[Callable[[str], str]],
                    batch_size: int) -> torch.Tensor:
    """Run every prompt of every class through the text tower; (C, D) unit-norm prompt means."""
    texts = [t(name) for name in classnames for t in fill]
    device = next(bundle.model.parameters()).device
    chunks = []
    with torch.autocast(device.type, enabled=False):   # fp32 under an inference autocast: the cache keys fp32
        for start in range(0, len(texts), batch_size):
            tokens = bundle.tokenizer(texts[start:start + batch_size]).to(device)
            chunks.append(F.normalize(bundle.model.encode_text(tokens).float(), dim=-1))
    embeddings = torch.cat(chunks).reshape(len(classnames), len(fill), -1).mean(1)
    return F.normalize(embeddings, dim=-1)
