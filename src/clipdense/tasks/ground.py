"""Phrase grounding and prompt detection with a GLIP head: what a sentence names, boxed.

    head = cd.load_head("runs/glip", bundle)
    found = cd.ground(bundle, "scene.png", "a red circle left of a blue star", head=head)
    for phrase in found.phrases: print(phrase.text, phrase.boxes[:1], phrase.scores[:1])

``ground`` takes one image and one sentence, or lists of both (each image its own sentence; one forward per size
group), and returns one ``Grounding`` per image. The phrases are the sentence's noun phrases (``noun_phrase_spans``)
unless ``spans`` names them. ``glip_detect`` runs a class list as GLIP prompts: a vocabulary whose prompt exceeds
the text tower's context is split into prompts that each fit, scored prompt by prompt, and the candidates of all of
them are merged before one NMS.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image, ImageDraw

from ..data.phrases import Span, check_spans, noun_phrase_spans
from ..errors import ConfigError
from ..heads.grounding import GLIPHead
from ..heads.grounding.prompting import prompt_chunks as chunk_prompts
from .detect import Detections, mask_rle, pixels
from .images import ImageLike, as_pil, texts_per_image
from .overlay import palette


@dataclass
class GroundedPhrase:
    """One phrase of the sentence: its words, character spans, and its boxes (K, 4) xyxy pixels with scores, best
    first; with a GLIPv2 mask head also each box's instance mask (K, H, W) bool."""

    text: str
    spans: tuple[Span, ...]
    boxes: torch.Tensor
    scores: torch.Tensor
    masks: torch.Tensor | None = None


@dataclass
class Grounding:
    """One image's answer: the sentence and each of its phrases with boxes."""

    sentence: str
    phrases: list[GroundedPhrase]

    def to_json(self) -> dict[str, Any]:
        """JSON-ready: phrases with spans, boxes, scores (and masks as COCO RLEs when the head makes them)."""
        phrases = []
        for p in self.phrases:
            entry = {"text": p.text, "spans": [list(s) for s in p.spans],
                     "boxes": [[round(v, 2) for v in b] for b in p.boxes.tolist()],
                     "scores": [round(float(s), 4) for s in p.scores.tolist()]}
            if p.masks is not None:
                entry["segmentations"] = [mask_rle(m) for m in p.masks]
            phrases.append(entry)
        return {"sentence": self.sentence, "phrases": phrases}


def as_grounder(head: GLIPHead | str | os.PathLike, bundle: Any) -> GLIPHead:
    """A loaded GLIP head (a path is loaded on ``bundle``, which refuses another backbone); other kinds refused."""
    from ..heads.expect import load_expected

    return load_expected(head, bundle, "grounder")   # type: ignore[return-value]


def sentence_spans(sentence: str, spans: Sequence[Sequence[Span]] | None = None) -> tuple[tuple[Span, ...], ...]:
    """The phrases to ground: ``spans`` (checked against the sentence) or its noun phrases; one line when the
    sentence is empty or names nothing."""
    if not isinstance(sentence, str) or not sentence.strip():
        raise ConfigError("sentence: expected some words, got an empty sentence")
    if spans is not None:
        return check_spans(sentence, spans, "spans")
    found = noun_phrase_spans(sentence)
    if not found:
        raise ConfigError(f"sentence {sentence!r}: no noun phrase found to ground (name a thing, e.g. 'a red "
                          "circle')")
    return tuple((s,) for s in found)


def _phrase_results(head: GLIPHead, found: dict[str, torch.Tensor], sentence: str,
                    spans: tuple[tuple[Span, ...], ...]) -> Grounding:
    phrases = []
    for index, phrase_spans in enumerate(spans):
        mine = found["labels"] == index
        order = found["scores"][mine].argsort(descending=True)
        masks = (found["masks"][mine][order][:, 0] >= 0.5).cpu() if "masks" in found else None
        phrases.append(GroundedPhrase(" ".join(sentence[s:e] for s, e in phrase_spans), phrase_spans,
                                      found["boxes"][mine][order].cpu(), found["scores"][mine][order].cpu(), masks))
    return Grounding(sentence, phrases)


@torch.no_grad()
def ground(bundle: Any, image: ImageLike | Sequence[ImageLike], sentence: str | Sequence[str],
           head: GLIPHead | str | os.PathLike | None = None,
           spans: Sequence[Sequence[Span]] | None = None) -> Grounding | list[Grounding]:
    """Boxes of every phrase of ``sentence`` in ``image`` (or of ``sentence[i]`` in ``image[i]``).

    Args:
        bundle: the backbone the head was trained on (``cd.load_model``); another one is refused.
        image: a path, PIL image or (3, H, W) tensor in [0, 1], or a list of them.
        sentence: the text (one per image for a list).
        head: a GLIP head (``cd.load_head``) or its file / run dir.
        spans: the phrases' character spans (one image only); default the sentence's noun phrases.
    """
    if head is None:
        raise ConfigError("ground needs a grounding head (head=...): train one with `clipdense train --objective "
                          "glip`")
    grounder = as_grounder(head, bundle)
    many, images, sentences = texts_per_image(image, sentence, "sentence")
    if spans is not None and len(images) != 1:
        raise ConfigError("spans: only with one image and one sentence")
    chosen = [sentence_spans(s, spans) for s in sentences]
    batch = [pixels(i).to(bundle.device) for i in images]
    found = ground_spans(grounder, batch, sentences, chosen)
    results = [_phrase_results(grounder, f, s, c) for f, s, c in zip(found, sentences, chosen)]
    return results if many else results[0]


def ground_spans(head: GLIPHead, images: Sequence[torch.Tensor], texts: Sequence[str],
                 spans: Sequence[Sequence[Sequence[Span]]]) -> list[dict[str, torch.Tensor]]:
    """Per image, detections of its phrases (labels = phrase index) in the given image's pixels."""
    return head.ground(images, texts, spans)


def prompt_chunks(head: GLIPHead, names: Sequence[str]) -> list[list[int]]:
    """Class indices in consecutive groups whose GLIP prompt fits the head's text context."""
    return chunk_prompts(head.bundle.tokenizer, names, head.config.context)


@torch.no_grad()
def glip_detect(head: GLIPHead, images: Sequence[torch.Tensor], names: Sequence[str]) -> list[Detections]:
    """Detections of ``names`` per image: each chunk's prompt scored alone, candidates merged, then one NMS."""
    return [Detections.of(r, names) for r in head.detect(images, names)]


def keep_best(grounding: Grounding, min_score: float = 0.0, top: int | None = None) -> Grounding:
    """Each phrase's boxes scoring at least ``min_score``, at most ``top`` of them."""
    phrases = []
    for p in grounding.phrases:
        keep = (p.scores >= min_score).nonzero().flatten()[:top]
        phrases.append(GroundedPhrase(p.text, p.spans, p.boxes[keep], p.scores[keep],
                                      None if p.masks is None else p.masks[keep]))
    return Grounding(grounding.sentence, phrases)


def draw_grounding(image: ImageLike, grounding: Grounding, width: int = 2) -> Image.Image:
    """The image with each phrase's boxes outlined in the phrase's colour and labelled 'phrase score' (masks, when
    the head makes them, tinted in that colour)."""
    canvas = (TF.to_pil_image(image) if isinstance(image, torch.Tensor) else as_pil(image)).copy().convert("RGB")
    colours = palette(max(len(grounding.phrases), 1))
    if any(p.masks is not None and len(p.masks) for p in grounding.phrases):
        pixels_ = np.asarray(canvas, dtype=np.float32)
        for index, phrase in reversed(list(enumerate(grounding.phrases))):
            for mask in ([] if phrase.masks is None else phrase.masks.numpy()[::-1]):   # best on top
                pixels_[mask] = 0.55 * pixels_[mask] + 0.45 * np.asarray(colours[index], dtype=np.float32)
        canvas = Image.fromarray(pixels_.round().clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for index, phrase in enumerate(grounding.phrases):
        colour = tuple(int(v) for v in colours[index])
        for box, score in zip(phrase.boxes.tolist(), phrase.scores.tolist()):
            draw.rectangle(box, outline=colour, width=width)
            text = f"{phrase.text} {score:.2f}"
            left, top = box[0], max(0.0, box[1] - 11)
            draw.rectangle([left, top, left + 6 * len(text) + 2, top + 11], fill=colour)
            draw.text((left + 1, top), text, fill="black")
    return canvas


__all__ = ["Grounding", "GroundedPhrase", "as_grounder", "glip_detect", "ground", "ground_spans", "prompt_chunks",
           "sentence_spans", "keep_best", "draw_grounding"]
