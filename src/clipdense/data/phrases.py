"""Phrases of a caption tied to boxes: what grounding data (modulated COCO, Flickr30k Entities) says of an image.

A ``Phrases`` holds the text its spans index, each phrase's character spans (a phrase may have several, as MDETR's
``tokens_positive`` lists), and for every row of ``Sample.boxes`` the phrase it belongs to. The boxes themselves
stay in ``Sample.boxes`` so every geometric transform moves them; ``transforms.keep_boxes`` drops a box's phrase
index with it.

GLIP's positive map links each box to the *tokens* of its phrase: ``token_spans`` maps character spans to token
positions of any tokenizer that encodes a text word by word (open_clip's CLIP BPE, SigLIP's SentencePiece) by
counting the tokens of the text before and up to each span's end.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from ..errors import DataError

Span = tuple[int, int]


@dataclass(frozen=True)
class Phrases:
    """The grounded phrases of one caption.

    Args:
        text: the caption the spans index (characters).
        spans: per phrase, its character spans [start, end) in ``text``.
        box_phrase: (N,) long, the phrase of each row of the sample's ``boxes``.
    """

    text: str
    spans: tuple[tuple[Span, ...], ...]
    box_phrase: torch.Tensor

    def __len__(self) -> int:
        return len(self.spans)

    def phrase(self, index: int) -> str:
        """The words of phrase ``index`` (its spans joined by a space)."""
        return " ".join(self.text[s:e] for s, e in self.spans[index])

    def select(self, keep: torch.Tensor) -> "Phrases":
        """The phrases with only the boxes where ``keep`` (N,) is True (phrases themselves all stay)."""
        return Phrases(self.text, self.spans, self.box_phrase[keep])

    def boxes_of(self, boxes: torch.Tensor, index: int) -> torch.Tensor:
        """(K, 4) the rows of ``boxes`` that phrase ``index`` refers to."""
        return boxes[self.box_phrase == index]


def check_spans(text: str, spans: Sequence[Sequence[Span]], where: str) -> tuple[tuple[Span, ...], ...]:
    """Spans as tuples; DataError (naming ``where``) for a span outside the text, an empty one, or a phrase
    without span."""
    out = []
    for index, phrase in enumerate(spans):
        if not phrase:
            raise DataError(f"{where}: phrase {index} has no character span in {text!r}")
        checked = []
        for span in phrase:
            if len(span) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in span):
                raise DataError(f"{where}: span {list(span)!r} of phrase {index}: expected [start, end] integers")
            start, end = int(span[0]), int(span[1])
            if not 0 <= start < end <= len(text):
                raise DataError(f"{where}: span [{start}, {end}] of phrase {index} is outside the caption "
                                f"({len(text)} characters: {text!r})")
            checked.append((start, end))
        out.append(tuple(checked))
    return tuple(out)


def clip_boxes(boxes: torch.Tensor, width: int, height: int, min_size: float = 1.0) -> torch.Tensor:
    """(N,) bool: which xyxy boxes keep at least ``min_size`` pixels a side once clipped to the image (the caller
    clips ``boxes`` in place). The reader's own check until the shared annotation validation takes it over."""
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
    return ((boxes[:, 2] - boxes[:, 0]) >= min_size) & ((boxes[:, 3] - boxes[:, 1]) >= min_size)


Tokenizer = Callable[..., torch.Tensor]


def token_count(tokenizer: Tokenizer, texts: Sequence[str]) -> list[int]:
    """Tokens of each text without start/end tokens (open_clip tokenizers: start + tokens + end, then zeros; a
    token holds at least one character, so a context of the longest text + 2 never cuts one)."""
    ids = tokenizer(list(texts), context_length=max(len(t) for t in texts) + 2)
    return [max(0, int((row != 0).sum()) - 2) for row in ids]


def token_spans(tokenizer: Tokenizer, text: str, spans: Sequence[Sequence[Span]]) -> list[list[int]]:
    """Per phrase, the positions of its tokens in ``tokenizer(text)`` (position 0 is the start token).

    A span [s, e) covers the tokens from ``count(text[:s])`` to ``count(text[:e])``: exact when spans start and
    end at word boundaries, as every phrase of grounding data does."""
    cuts = sorted({c for phrase in spans for span in phrase for c in span})
    counts = dict(zip(cuts, token_count(tokenizer, [text[:c] for c in cuts]))) if cuts else {}
    out = []
    for phrase in spans:
        positions: list[int] = []
        for start, end in phrase:
            positions.extend(range(1 + counts[start], 1 + counts[end]))
        out.append(sorted(set(positions)))
    return out


def positive_map(tokenizer: Tokenizer, phrases: Phrases, context: int) -> torch.Tensor:
    """(N boxes, ``context``) float: GLIP's positive map, 1 on the tokens of each box's phrase (tokens past the
    context are cut, as the text tower cuts them)."""
    tokens = token_spans(tokenizer, phrases.text, phrases.spans)
    out = torch.zeros((len(phrases.box_phrase), context))
    for row, phrase in enumerate(phrases.box_phrase.tolist()):
        kept = [t for t in tokens[phrase] if t < context - 1]
        if kept:
            out[row, kept] = 1.0
    return out


def noun_phrase_spans(sentence: str) -> list[Span]:
    """Character spans of the sentence's noun phrases: runs of content words between punctuation, closed-class
    words and verb forms, by the rules of ``data.nouns`` (no tagger, no download): "a red circle left of a blue
    star" -> spans of "red circle" and "blue star"."""
    from .nouns import STOP_WORDS, _is_verb_form as is_verb_form

    spans: list[Span] = []
    start = end = -1
    for match in re.finditer(r"[A-Za-z][A-Za-z'-]*|[0-9]+|[^\sA-Za-z0-9]", sentence):
        word = match.group(0).lower().strip("'-")
        if not word or not word[0].isalpha() or word in STOP_WORDS or is_verb_form(word):
            if start >= 0:
                spans.append((start, end))
            start = -1
            continue
        start = match.start() if start < 0 else start
        end = match.end()
    if start >= 0:
        spans.append((start, end))
    return spans
