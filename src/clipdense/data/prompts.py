"""Detection as grounding (GLIP): a class list becomes one prompt, "red circle. blue star.", whose class names are
the phrases; each box's phrase is its class's place in the prompt.

In training, a detection sample's prompt holds the classes it shows plus sampled absent ones (negatives), in a
shuffled order, so the model learns to find a name wherever it sits in the text and to leave absent names alone
(GLIP's ``ConvertCocoPolysToMask`` with ``max_query_len``-bounded negative sampling).
"""
from __future__ import annotations

from typing import Sequence

import torch

from ..errors import ConfigError
from .phrases import Phrases, Span

SEPARATOR = ". "


def class_prompt(names: Sequence[str]) -> tuple[str, list[Span]]:
    """("red circle. blue star.", each name's character span): GLIP's prompt of a class list."""
    if not names:
        raise ConfigError("classes: expected at least one class name")
    text, spans = "", []
    for index, name in enumerate(names):
        name = " ".join(str(name).split())
        if not name:
            raise ConfigError(f"classes: class {index} is empty")
        if index:
            text += SEPARATOR
        spans.append((len(text), len(text) + len(name)))
        text += name
    return text + ".", spans


def detection_phrases(classes: Sequence[str], labels: torch.Tensor, negatives: int, generator: torch.Generator,
                      allowed: Sequence[int] | None = None) -> tuple[Phrases, list[int]]:
    """A detection sample as grounding: (phrases over the prompt, the class index of each phrase).

    Args:
        classes: the data's class names.
        labels: (N,) the boxes' class indices (every one must be in ``allowed``).
        negatives: how many absent classes to add (fewer when fewer exist).
        generator: the sample's generator (which negatives, which order).
        allowed: the classes a prompt may name (default all): a protocol's base classes.
    """
    allowed = list(range(len(classes))) if allowed is None else [int(c) for c in allowed]
    present = sorted({int(c) for c in labels.tolist()})
    absent = [c for c in allowed if c not in set(present)]
    order = torch.randperm(len(absent), generator=generator)[:max(0, negatives)].tolist()
    chosen = present + [absent[i] for i in order]
    chosen = [chosen[i] for i in torch.randperm(len(chosen), generator=generator).tolist()]
    text, spans = class_prompt([classes[c] for c in chosen])
    place = {c: i for i, c in enumerate(chosen)}
    box_phrase = torch.tensor([place[int(c)] for c in labels.tolist()], dtype=torch.long)
    return Phrases(text, tuple((s,) for s in spans), box_phrase), chosen
