"""VQAv2 (Goyal et al. 2017): the questions file and the annotations file, read and written, one ``Sample`` per
question (``image`` + ``question``).

Questions (``v2_OpenEnded_mscoco_{subtype}_questions.json``)::

    {"info": .., "task_type": "Open-Ended", "data_type": "mscoco", "data_subtype": "val2014", "license": ..,
     "questions": [{"image_id": 42, "question": "What colour is the star?", "question_id": 42000}, ...]}

Annotations (``v2_mscoco_{subtype}_annotations.json``)::

    {"annotations": [{"question_id": 42000, "image_id": 42, "question_type": "what color is the",
                      "answer_type": "other", "multiple_choice_answer": "red",
                      "answers": [{"answer": "red", "answer_confidence": "yes", "answer_id": 1}, ... x 10]}]}

Images live in one folder. An image id is found, in this order, as ``COCO_{data_subtype}_{id:012d}.jpg`` (how
VQAv2 users have COCO images), else through the ``file_name`` of a COCO instances JSON when one is given
(``instances=FILE``: the world's route), else as ``{id:012d}.*`` or ``{id:06d}.*`` in the folder. A question whose
image is not found is dropped and named in the skip log; an unreadable image is skipped and counted when read, as
every reader does. Structure errors are one line naming the file and what was expected (``DataError``): a question
without an integer ``image_id``, an annotation of a question the questions file does not have, ``answers`` that
are not a list of answer strings.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ...config import atomic_write_bytes
from ...errors import DataError
from ..images import open_image
from ..questions import ANSWER_TYPES, Question, answer_vocabulary
from ..sample import Sample
from ..skips import SkipCounter, SkippingDataset
from ..validate import read_json, skip_error


@dataclass(frozen=True)
class VQARecord:
    """One question as the writer takes it: its image id and the ``Question`` (id, text, answers, types)."""

    image_id: int
    question: Question


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _questions(path: Path) -> tuple[str, list[dict[str, Any]]]:
    """(data_subtype, the checked question dicts) of a questions file."""
    doc = read_json(path, "VQAv2 questions file")
    if not isinstance(doc, dict) or not isinstance(doc.get("questions"), list):
        raise DataError(f"{path}: expected a VQAv2 questions file (a dict with a 'questions' list)")
    for n, q in enumerate(doc["questions"]):
        if not isinstance(q, dict) or not _integer(q.get("question_id")) or not isinstance(q.get("question"), str):
            raise DataError(f"{path}: question {n} is not a dict with an integer 'question_id' and a 'question' "
                            "string")
        if not _integer(q.get("image_id")):
            raise DataError(f"{path}: question {q['question_id']} has no integer 'image_id'; expected the id of "
                            "the image it asks about")
    return str(doc.get("data_subtype") or ""), doc["questions"]


def _answers(path: Path, ann: dict[str, Any]) -> tuple[str, ...]:
    """The answer strings of one annotation (dicts with an 'answer', or plain strings)."""
    raw = ann.get("answers")
    texts = [a.get("answer") if isinstance(a, dict) else a for a in raw] if isinstance(raw, list) else None
    if not texts or not all(isinstance(t, str) for t in texts):
        raise DataError(f"{path}: annotation of question {ann.get('question_id')}: 'answers' {str(raw)[:80]}; "
                        "expected a list of answers, each {'answer': STRING, ...} or a string")
    return tuple(texts)


def _annotations(path: Path, known: set[int]) -> dict[int, dict[str, Any]]:
    """question_id -> its checked annotation dict."""
    doc = read_json(path, "VQAv2 annotations file")
    if not isinstance(doc, dict) or not isinstance(doc.get("annotations"), list):
        raise DataError(f"{path}: expected a VQAv2 annotations file (a dict with an 'annotations' list)")
    out: dict[int, dict[str, Any]] = {}
    for n, ann in enumerate(doc["annotations"]):
        if not isinstance(ann, dict) or not _integer(ann.get("question_id")):
            raise DataError(f"{path}: annotation {n} is not a dict with an integer 'question_id'")
        if ann["question_id"] not in known:
            raise DataError(f"{path}: annotation {n} is for question {ann['question_id']}, which the questions "
                            "file does not have; expected annotations of its questions only")
        if ann.get("answer_type") not in ANSWER_TYPES:
            raise DataError(f"{path}: annotation of question {ann['question_id']}: answer_type "
                            f"{ann.get('answer_type')!r}; expected one of {', '.join(ANSWER_TYPES)}")
        ann = {**ann, "answers": _answers(path, ann)}
        if not isinstance(ann.get("multiple_choice_answer"), str):
            ann["multiple_choice_answer"] = Counter(ann["answers"]).most_common(1)[0][0]
        out[ann["question_id"]] = ann
    return out


def _instances_names(path: Path) -> dict[int, str]:
    """image id -> file_name of a COCO instances JSON."""
    doc = read_json(path, "COCO instances file")
    images = doc.get("images") if isinstance(doc, dict) else None
    if not isinstance(images, list) or not all(isinstance(i, dict) and _integer(i.get("id")) and
                                               isinstance(i.get("file_name"), str) for i in images):
        raise DataError(f"{path}: expected a COCO instances file whose 'images' have an integer 'id' and a "
                        "'file_name'")
    return {int(i["id"]): str(i["file_name"]) for i in images}


class ImageFinder:
    """Image id -> file in ``folder`` by VQAv2's COCO name, an instances JSON's file_name, or the zero-padded id."""

    def __init__(self, folder: Path, subtype: str, instances: Path | None) -> None:
        self.folder, self.subtype = folder, subtype
        self.names = _instances_names(instances) if instances is not None else {}
        self.stems: dict[str, str] = {}
        for entry in sorted(os.listdir(folder)):
            self.stems.setdefault(Path(entry).stem, entry)
        self.files = set(self.stems.values())

    def find(self, image_id: int) -> str | None:
        """The file name of ``image_id`` in the folder (None: not there)."""
        coco = f"COCO_{self.subtype}_{image_id:012d}.jpg"
        if self.subtype and coco in self.files:
            return coco
        named = self.names.get(image_id)
        if named is not None and (self.folder / named).is_file():
            return named
        return self.stems.get(f"{image_id:012d}") or self.stems.get(f"{image_id:06d}")


class VQAv2(SkippingDataset):
    """(image, question) samples of VQAv2 question + annotation files (see the module docstring).

    Args:
        image_dir: the image folder.
        questions / annotations: the two JSON files.
        instances: an optional COCO instances JSON naming each image id's file.
    """

    def __init__(self, image_dir: str | os.PathLike, questions: str | os.PathLike, annotations: str | os.PathLike,
                 instances: str | os.PathLike | None = None, *, skip_counter: SkipCounter | None = None) -> None:
        self.image_dir, self.path = Path(image_dir), Path(questions)
        if not self.image_dir.is_dir():
            raise DataError(f"{self.image_dir}: no such image folder")
        self.skips = skip_counter if skip_counter is not None else SkipCounter()
        self.subtype, raw = _questions(self.path)
        anns = _annotations(Path(annotations), {q["question_id"] for q in raw})
        finder = ImageFinder(self.image_dir, self.subtype, Path(instances) if instances else None)
        self.records: list[tuple[str, Question]] = []
        for q in raw:
            file = finder.find(q["image_id"])
            if file is None:
                self.skips.add(skip_error(f"{self.path} (question {q['question_id']})", f"image {q['image_id']} "
                                          f"not found in {self.image_dir}; dropped"))
                continue
            ann = anns.get(q["question_id"], {})
            self.records.append((file, Question(q["question_id"], q["question"], tuple(ann.get("answers", ())),
                                                str(ann.get("multiple_choice_answer", "")),
                                                str(ann.get("answer_type", "")), str(ann.get("question_type", "")))))
        if raw and not self.records:
            raise DataError(f"{self.path}: none of the {len(raw)} questions' images is in {self.image_dir}; "
                            f"expected COCO_{self.subtype or 'SUBTYPE'}_ID.jpg, ID (12 or 6 digits).*, or "
                            "instances=FILE naming them")
        if not any(r[1].answers for r in self.records):
            raise DataError(f"{annotations}: no annotation for any question of {self.path}; expected VQAv2 "
                            "annotations (answers) of its questions")

    @property
    def answers(self) -> tuple[str, ...]:
        """The data's answers, most frequent first (the vocabulary a VQA head is built on)."""
        return tuple(answer_vocabulary(q for _, q in self.records if q.answers))

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Sample:
        file, question = self.records[index]
        return Sample(image=open_image(self.image_dir / file), key=f"q{question.id}", question=question)


def write_vqa(questions_path: str | os.PathLike, annotations_path: str | os.PathLike, records: Sequence[VQARecord],
              data_subtype: str, description: str = "") -> None:
    """Write ``records`` as a VQAv2 questions file and annotations file (answer ids 1..n, confidence 'yes')."""
    info = {"description": description, "version": "2.0"}
    questions = [{"image_id": r.image_id, "question": r.question.text, "question_id": r.question.id}
                 for r in records]
    annotations = [{"question_id": r.question.id, "image_id": r.image_id, "question_type": r.question.question_type,
                    "answer_type": r.question.answer_type, "multiple_choice_answer": r.question.answer,
                    "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": n + 1}
                                for n, a in enumerate(r.question.answers)]} for r in records]
    license_ = {"name": "clipdense synthetic world", "url": ""}
    atomic_write_bytes(Path(questions_path), json.dumps(
        {"info": info, "task_type": "Open-Ended", "data_type": "mscoco", "data_subtype": data_subtype,
         "license": license_, "questions": questions}).encode())
    atomic_write_bytes(Path(annotations_path), json.dumps(
        {"info": info, "license": license_, "data_subtype": data_subtype, "annotations": annotations}).encode())


__all__ = ["ImageFinder", "VQARecord", "VQAv2", "write_vqa"]
