"""Visual question answering with a GLIPv2 head: the question is the prompt, the answer a class of its vocabulary.

    head = cd.load_head("runs/vqa", bundle)          # trained with --objective glipv2 --objective-arg data=vqa
    found = cd.answer(bundle, "scene.png", "What colour is the star?", head=head)
    found.answers[0], found.scores[0]                 # "red", 0.97

``answer`` takes one image and one question, or lists (each image its own question, or one question for all) and
returns one ``Answers`` per image: the head's top answers with their sigmoid scores, best first.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from ..errors import ConfigError
from ..heads.grounding import GLIPHead
from ..heads.grounding.vqa import answer_probabilities, has_vqa
from .detect import pixels
from .images import ImageLike, texts_per_image

NO_VQA = "a GLIP head without a VQA part (no answer vocabulary); train one with `clipdense train --objective " \
         "glipv2 --objective-arg data=vqa`"


@dataclass
class Answers:
    """The top answers to one question about one image, best first, with their scores (0..1)."""

    question: str
    answers: list[str]
    scores: list[float]

    def to_json(self) -> dict[str, Any]:
        return {"question": self.question,
                "answers": [{"answer": a, "score": round(s, 4)} for a, s in zip(self.answers, self.scores)]}


def as_answerer(head: GLIPHead | str | os.PathLike, bundle: Any, given_as: str = "head") -> GLIPHead:
    """A loaded GLIP head with a VQA part (a path is loaded on ``bundle``, which refuses another backbone)."""
    from ..heads.expect import expect_head, load_expected

    if not isinstance(head, torch.nn.Module) and not expect_head(head, "vqa", given_as).config.get("answers"):
        raise ConfigError(f"{given_as} {head}: {NO_VQA}")
    loaded = load_expected(head, bundle, "vqa", given_as)
    if not has_vqa(loaded):
        raise ConfigError(f"{given_as}: {NO_VQA}")
    return loaded   # type: ignore[return-value]


def check_question(question: Any) -> str:
    """The question stripped; one line for an empty one."""
    if not isinstance(question, str) or not question.strip():
        raise ConfigError("question: expected some words, got an empty question")
    return question.strip()


@torch.no_grad()
def answer(bundle: Any, image: ImageLike | Sequence[ImageLike], question: str | Sequence[str],
           head: GLIPHead | str | os.PathLike | None = None, top: int = 5) -> Answers | list[Answers]:
    """The ``top`` answers to ``question`` about ``image`` (or to ``question[i]`` about ``image[i]``).

    Args:
        bundle: the backbone the head was trained on (``cd.load_model``); another one is refused.
        image: a path, PIL image or (3, H, W) tensor in [0, 1], or a list of them.
        question: the question (one for all images, or one per image).
        head: a GLIPv2 head with a VQA part (``cd.load_head``) or its file / run dir.
        top: answers returned per question.
    """
    if head is None:
        raise ConfigError("answer needs a GLIPv2 head with a VQA part (head=...): train one with `clipdense train "
                          "--objective glipv2 --objective-arg data=vqa`")
    if not isinstance(top, int) or top < 1:
        raise ConfigError(f"top {top!r}: expected a number of answers >= 1")
    answerer = as_answerer(head, bundle)
    many, images, questions = texts_per_image(image, question, "question")
    questions = [check_question(q) for q in questions]
    probs = answer_probabilities(answerer, [pixels(i).to(bundle.device) for i in images], questions).cpu()
    vocabulary = answerer.config.answers
    results = []
    for text, row in zip(questions, probs):
        best = row.topk(min(top, len(row)))
        results.append(Answers(text, [vocabulary[i] for i in best.indices.tolist()],
                               [float(s) for s in best.values.tolist()]))
    return results if many else results[0]


__all__ = ["Answers", "answer", "as_answerer", "check_question"]
