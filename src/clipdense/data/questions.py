"""A question about an image and what its annotators answered (VQAv2): the ``question`` field of a ``Sample``.

The question has no geometry, so every transform carries it untouched. Answers are compared after the VQA
evaluator's normalisation (``normalize_answer``), written here from the description of the official evaluation
(Antol et al. 2015; the VQAv2 evaluation page): lower case; punctuation removed (or made a space when it separates
words), a period removed unless a digit follows it, a comma between digits removed; number words up to ten made
digits ("two" -> "2", "none" -> "0"); the articles a / an / the dropped; common contractions written without their
apostrophe restored ("dont" -> "don't"). The official evaluator normalises only questions whose ten answers differ;
we always normalise both sides, so "Two." and "2" are the same answer everywhere.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

#: VQAv2's answer types
ANSWER_TYPES: tuple[str, ...] = ("yes/no", "number", "other")

_NUMBERS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
            "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
_ARTICLES = frozenset({"a", "an", "the"})
_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "didnt": "didn't", "doesnt": "doesn't", "dont": "don't", "hadnt": "hadn't", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hes": "he's", "howd": "how'd", "howll": "how'll", "hows": "how's",
    "id": "i'd", "im": "i'm", "ive": "i've", "isnt": "isn't", "itd": "it'd", "itll": "it'll", "mightnt": "mightn't",
    "mightve": "might've", "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "shant": "shan't",
    "shed": "she'd", "shes": "she's", "shouldve": "should've", "shouldnt": "shouldn't", "somebodys": "somebody's",
    "someones": "someone's", "thats": "that's", "thered": "there'd", "theres": "there's", "theyd": "they'd",
    "theyll": "they'll", "theyre": "they're", "theyve": "they've", "wasnt": "wasn't", "wed": "we'd",
    "weve": "we've", "werent": "weren't", "whatll": "what'll", "whatre": "what're", "whats": "what's",
    "whatve": "what've", "whens": "when's", "whered": "where'd", "wheres": "where's", "whereve": "where've",
    "whod": "who'd", "wholl": "who'll", "whos": "who's", "whove": "who've", "whyre": "why're", "whys": "why's",
    "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't", "yall": "y'all", "youd": "you'd",
    "youll": "you'll", "youre": "you're", "youve": "you've",
}
_PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",",
                "?", "!")
_DIGIT_COMMA = re.compile(r"(\d)(,)(\d)")
_LONE_PERIOD = re.compile(r"\.(?!\d)")


def _punctuation(text: str) -> str:
    """Each mark dropped where it touches a space (or a comma sits between digits), else made a space."""
    out = text
    for mark in _PUNCTUATION:
        if f"{mark} " in text or f" {mark}" in text or _DIGIT_COMMA.search(text):
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return _LONE_PERIOD.sub("", out)


def normalize_answer(answer: str) -> str:
    """An answer as the VQA evaluator compares it: "Two." -> "2", "a circle" -> "circle", "dont" -> "don't"."""
    text = _punctuation(" ".join(str(answer).lower().split()))
    words = [_NUMBERS.get(w, w) for w in text.split()]
    return " ".join(_CONTRACTIONS.get(w, w) for w in words if w not in _ARTICLES)


@dataclass(frozen=True)
class Question:
    """One VQAv2 question with its annotation.

    Args:
        id: the ``question_id``.
        text: the question.
        answers: what each annotator answered (VQAv2: ten), as written.
        answer: the ``multiple_choice_answer`` (the most common one).
        answer_type: "yes/no", "number" or "other".
        question_type: the ``question_type`` (VQAv2: the question's first words; a world: colour, shape, count,
            relation).
    """

    id: int
    text: str
    answers: tuple[str, ...]
    answer: str
    answer_type: str
    question_type: str

    def scores(self, vocabulary: Sequence[str]) -> list[float]:
        """VQA's soft target over ``vocabulary`` (normalised answers): min(1, annotators giving it / 3)."""
        counts = Counter(normalize_answer(a) for a in self.answers)
        return [min(1.0, counts.get(word, 0) / 3.0) for word in vocabulary]


def answer_vocabulary(questions: Iterable[Question], limit: int | None = None) -> list[str]:
    """The most frequent (normalised) ``multiple_choice_answer``s, most frequent first, ties alphabetical."""
    counts = Counter(normalize_answer(q.answer) for q in questions)
    ranked = sorted(counts, key=lambda a: (-counts[a], a))
    return ranked[:limit] if limit else ranked


__all__ = ["ANSWER_TYPES", "Question", "answer_vocabulary", "normalize_answer"]
