"""Write the world's VQAv2 questions about each scene's things (``clipdense data synth --vqa``)::

    WORLD/vqa/v2_OpenEnded_mscoco_{train,val}_questions.json   VQAv2 questions (image_id = the COCO image id)
    WORLD/vqa/v2_mscoco_{train,val}_annotations.json           ten answers each, answer and question types

Scenes are regenerated from the world's config.yaml (as ``grounding.py`` does), so the questions always match the
written images. Each scene gets at most one question of each kind, when the scene makes it unambiguous:

- colour: "What colour is the star?" (one star in the scene, a coloured one) -> "red";
- shape: "What shape is the red object?" (one red thing) -> "star";
- count: "How many circles are there?" (a shape of the world, present or not) -> "0".."9", and "How many objects
  are there?";
- relation: "Is the red circle left of the blue star?" (both named uniquely, clearly apart) -> yes / no, asked
  true or false with equal odds; "What is left of the blue star?" (exactly one thing clearly left of it, none
  level with it) -> its shape.

Positions are the centres of the things' visible masks; "clearly" means more than ``MARGIN`` of the image apart.
The vocabulary is closed and small: colours, shapes, digits, yes / no. The world's answers are certain, so the ten
answers of a question are the same word. Question types are the four kinds (colour, shape, count, relation), so
the evaluation reports per kind; answer types are VQAv2's (yes/no, number, other).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ...config import atomic_write_bytes, build_config
from ..formats.vqa import VQARecord, write_vqa
from ..questions import Question
from .scenes import SPLIT_CODES, Scene, SynthConfig, generate_scene, make_vocabulary
from .writers import SPLITS

VQA_DIR = "vqa"
ANSWERS_PER_QUESTION = 10
MARGIN = 0.12                      # of the image side: how far apart "left of" must be
QUESTION_TYPES = ("colour", "shape", "count", "relation")
PLURALS = {"cross": "crosses", "snowman": "snowmen", "bullseye": "bullseyes", "checkerboard": "checkerboards"}


def vqa_files(world: str | Path, split: str) -> tuple[Path, Path]:
    """(questions, annotations) paths of ``split`` in the world at ``world``."""
    folder = Path(world) / VQA_DIR
    return (folder / f"v2_OpenEnded_mscoco_{split}_questions.json", folder / f"v2_mscoco_{split}_annotations.json")


@dataclass(frozen=True)
class SceneObject:
    """What the questions know of one thing: colour (None for composites drawn in their own colours), shape, and
    the centre of its visible mask in units of the image side."""

    colour: str | None
    shape: str
    x: float
    y: float

    def name(self) -> str:
        return f"{self.colour} {self.shape}" if self.colour else self.shape


def plural(shape: str) -> str:
    return PLURALS.get(shape, shape + "s")


def scene_objects(scene: Scene, size: int) -> list[SceneObject]:
    """The scene's things with the centres of their visible masks."""
    out = []
    for thing, mask in zip(scene.things, scene.masks):
        ys, xs = np.nonzero(mask)
        out.append(SceneObject(thing.colour, thing.shape, float(xs.mean()) / size, float(ys.mean()) / size))
    return out


QA = tuple[str, str, str, str]     # (question, answer, answer type, question type)


def _colour_questions(objects: list[SceneObject]) -> list[QA]:
    shapes = [o.shape for o in objects]
    return [(f"What colour is the {o.shape}?", o.colour, "other", "colour") for o in objects
            if o.colour and shapes.count(o.shape) == 1]


def _shape_questions(objects: list[SceneObject]) -> list[QA]:
    colours = [o.colour for o in objects]
    return [(f"What shape is the {o.colour} object?", o.shape, "other", "shape") for o in objects
            if o.colour and colours.count(o.colour) == 1]


def _count_questions(objects: list[SceneObject], shapes: list[str], rng: np.random.Generator) -> list[QA]:
    present = sorted({o.shape for o in objects if o.shape in shapes})
    shape = present[int(rng.integers(len(present)))] if present and rng.random() < 0.7 else \
        shapes[int(rng.integers(len(shapes)))]
    count = sum(o.shape == shape for o in objects)
    return [(f"How many {plural(shape)} are there?", str(count), "number", "count"),
            (f"How many objects are there?", str(len(objects)), "number", "count")]


def _relation_questions(objects: list[SceneObject], rng: np.random.Generator) -> list[QA]:
    """One yes / no question about a clearly separated pair (true or false with equal odds) and one 'what is left
    of' question whose answer is unique; named things only (their colour + shape occurs once)."""
    names = [o.name() for o in objects]
    unique = [o for o in objects if names.count(o.name()) == 1]
    pairs = [(a, b) for a in unique for b in unique if b.x - a.x > MARGIN]     # a clearly left of b
    out: list[QA] = []
    if pairs:
        a, b = pairs[int(rng.integers(len(pairs)))]
        true = bool(rng.random() < 0.5)
        first, second = (a, b) if true else (b, a)
        out.append((f"Is the {first.name()} left of the {second.name()}?", "yes" if true else "no", "yes/no",
                    "relation"))
    answerable = []
    for ref in unique:
        left = [o for o in objects if o is not ref and ref.x - o.x > MARGIN]
        level = [o for o in objects if o is not ref and abs(ref.x - o.x) <= MARGIN]
        if len(left) == 1 and not level:
            answerable.append((f"What is left of the {ref.name()}?", left[0].shape, "other", "relation"))
    if answerable:
        out.append(answerable[int(rng.integers(len(answerable)))])
    return out


def scene_questions(objects: list[SceneObject], shapes: list[str], rng: np.random.Generator) -> list[QA]:
    """At most one question of each kind (two of count and relation) about ``objects``, in a fixed order."""
    out: list[QA] = []
    for found in (_colour_questions(objects), _shape_questions(objects)):
        if found:
            out.append(found[int(rng.integers(len(found)))])
    return out + _count_questions(objects, shapes, rng) + _relation_questions(objects, rng)


def split_records(cfg: SynthConfig, split: str, count: int, step: Callable[[int], None]) -> list[VQARecord]:
    """Every question of the first ``count`` scenes of ``split`` (image id = scene index + 1, as the COCO files)."""
    vocab = make_vocabulary(cfg)
    shapes = list(cfg.shapes)
    records = []
    for index in range(count):
        scene = generate_scene(cfg, vocab, split, index)
        rng = np.random.default_rng([cfg.seed, SPLIT_CODES[split], index, 7])
        image_id = index + 1
        for n, (text, answer, answer_type, kind) in enumerate(
                scene_questions(scene_objects(scene, cfg.image_size), shapes, rng)):
            question = Question(image_id * 1000 + n, text, (answer,) * ANSWERS_PER_QUESTION, answer, answer_type,
                                kind)
            records.append(VQARecord(image_id, question))
        step(1)
    return records


README = """
## VQA (`clipdense data synth --vqa`)

VQAv2 questions about each scene's things, in the VQAv2 layout (read with `--data vqa:images=WORLD/val/images,
questions=...,annotations=...,instances=WORLD/annotations/instances_val.json`, or `--data WORLD`, which offers them
to whatever needs `question`):

- vqa/v2_OpenEnded_mscoco_{train,val}_questions.json: the questions (image_id = the COCO image id);
- vqa/v2_mscoco_{train,val}_annotations.json: ten identical answers each (the world is certain), answer_type
  (yes/no, number, other) and question_type: colour, shape, count or relation.

Answers are colours, shapes, digits and yes / no.
"""


def _readme(world: Path) -> None:
    """Append the VQA section to the world's README once."""
    path = world / "README.md"
    text = path.read_text() if path.is_file() else ""
    if "## VQA" not in text:
        atomic_write_bytes(path, (text + README).encode())


def write_vqa_world(world: str | Path, progress: Callable[[int], None] | None = None) -> dict[str, int]:
    """The VQAv2 files for every split of the world at ``world``; returns the questions written per split."""
    world = Path(world)
    cfg = build_config(SynthConfig, str(world / "config.yaml"), {})
    counts = {}
    for split in SPLITS:
        records = split_records(cfg, split, cfg.train if split == "train" else cfg.val, progress or (lambda n: None))
        questions, annotations = vqa_files(world, split)
        questions.parent.mkdir(parents=True, exist_ok=True)
        write_vqa(questions, annotations, records, split,
                  f"clipdense synthetic world, {split} split: questions about colour, shape, count and relations")
        counts[split] = len(records)
    _readme(world)
    return counts


__all__ = ["QUESTION_TYPES", "SceneObject", "scene_objects", "scene_questions", "vqa_files", "write_vqa_world"]
