"""VQAv2 accuracy (Antol et al. 2015; Goyal et al. 2017), written from the official evaluation's description.

An answer is right to the degree that annotators gave it: with the ten human answers of a question, the accuracy of
a predicted answer is the mean, over the ten subsets of nine answers that leave one annotator out, of
min(1, #annotators in the subset who gave it / 3). So an answer three of ten gave scores (3 x 2/3 + 7 x 1) / 10 =
0.9, one that four or more gave scores 1. Answers are compared after the evaluator's normalisation
(``data.questions.normalize_answer``: punctuation, articles, number words, contractions). Results are in percent:
overall, per answer type (yes/no, number, other) and per question type (the data's ``question_type``: a world's
colour, shape, count, relation; VQAv2's question prefixes).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Sequence

import torchvision.transforms.functional as TF

from ..data.questions import Question, normalize_answer
from ..errors import ConfigError, DataError
from .common import chunks, progress
from .context import EvalContext
from .inputs import load_or_skip
from .registry import NoOptions, register_task


def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """The VQA accuracy (0..1) of ``prediction`` against the human ``answers``: the mean over leave-one-out subsets
    of min(1, matches / 3)."""
    if not answers:
        raise DataError("VQA accuracy needs the question's human answers")
    guess = normalize_answer(prediction)
    hits = [normalize_answer(a) == guess for a in answers]
    if len(hits) == 1:
        return float(hits[0])
    total = sum(hits)
    return sum(min(1.0, (total - hit) / 3.0) for hit in hits) / len(hits)


def vqa_scores(predictions: Sequence[str], questions: Sequence[Question]) -> dict[str, Any]:
    """{"overall": %, "per_answer_type": {type: %}, "per_question_type": {type: %}, "counts": {...}} over the
    questions, each with its predicted answer."""
    by_answer: dict[str, list[float]] = defaultdict(list)
    by_question: dict[str, list[float]] = defaultdict(list)
    every = []
    for prediction, question in zip(predictions, questions):
        accuracy = vqa_accuracy(prediction, question.answers)
        every.append(accuracy)
        by_answer[question.answer_type].append(accuracy)
        by_question[question.question_type].append(accuracy)

    def percent(values: list[float]) -> float:
        return round(100 * sum(values) / max(len(values), 1), 2)

    return {"overall": percent(every),
            "per_answer_type": {k: percent(v) for k, v in sorted(by_answer.items())},
            "per_question_type": {k: percent(v) for k, v in sorted(by_question.items())},
            "counts": {"questions": len(every), "per_answer_type": {k: len(v) for k, v in sorted(by_answer.items())},
                       "per_question_type": {k: len(v) for k, v in sorted(by_question.items())}}}


def evaluate_vqa(head: Any, reader: Any, batch_size: int = 16, skips: Any = None,
                 show_progress: bool = False) -> dict[str, Any]:
    """VQA accuracy of a GLIP head with a VQA part on a reader of question data (image + question)."""
    from ..heads.grounding.vqa import answer_probabilities

    device = head.log_scale.device
    answers = list(head.config.answers)
    predictions: list[str] = []
    questions: list[Question] = []
    for chunk in progress(list(chunks(list(range(len(reader))), batch_size)), "vqa", enabled=show_progress):
        samples = [s for s in (load_or_skip(skips, lambda i=i: reader[i]) if skips is not None else reader[i]
                               for i in chunk) if s is not None and s.question is not None and s.question.answers]
        if not samples:
            continue
        probs = answer_probabilities(head, [TF.to_tensor(s.image).to(device) for s in samples],
                                     [s.question.text for s in samples])
        predictions.extend(answers[int(i)] for i in probs.argmax(1).tolist())
        questions.extend(s.question for s in samples)
    return {**vqa_scores(predictions, questions), "answers": len(answers), "head": head.kind}


def vqa_report(result: dict[str, Any]) -> list[str]:
    """The Markdown section of ``clipdense eval --tasks vqa``."""
    rows = [f"| overall | {result['overall']:.2f} | {result['counts']['questions']} |"]
    for group, prefix in (("per_answer_type", "answer type"), ("per_question_type", "question type")):
        rows += [f"| {prefix} {k} | {v:.2f} | {result['counts'][group][k]} |"
                 for k, v in result[group].items()]
    return ["| questions | VQA accuracy (%) | count |", "|---|---|---|", *rows, "",
            f"VQAv2 accuracy (min(1, matches / 3), leave-one-out over the answers) over {result['answers']} "
            "candidate answers."]


@register_task("vqa", needs={"question", "image"}, summary="VQAv2 accuracy (overall, per answer and question "
               "type) of a GLIPv2 head with a VQA part (--head)", report=vqa_report, needs_head=True,
               head_role="vqa")
def vqa_task(ctx: EvalContext, reader: Any, options: NoOptions) -> tuple[dict, int]:
    """The registered task: the context's GLIP head answers the reader's questions."""
    from ..tasks.vqa import as_answerer
    if ctx.head is None:
        raise ConfigError("--tasks vqa needs --head HEAD (a GLIPv2 head trained with data=vqa)")
    head = as_answerer(ctx.head, ctx.bundle).to(ctx.device)
    result = evaluate_vqa(head, reader, ctx.settings.batch_size, ctx.data.skips, ctx.settings.show_progress)
    return result, result["counts"]["questions"]


__all__ = ["evaluate_vqa", "vqa_accuracy", "vqa_report", "vqa_scores"]
