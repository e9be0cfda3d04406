"""GLIPv2's VQA head on the synthetic world (issue 26): VQA accuracy on the val split's questions (colour, shape,
count, relation) of `glipv2` after grounding pre-training + VQA fine-tuning (GLIPv2's recipe), beside the same head
fine-tuned from scratch (no grounding pre-training) and two question-only priors computed from the train
annotations (the most frequent answer per question type, and per exact question text), which never look at an
image: what a head scores above them it read from the image.

Every stage is a `clipdense` command, run as written (so the table is its own recipe), timed, and recorded in
OUT/results.json (a re-run skips stages whose outputs exist). Prints the Markdown table for docs/results/grounding.md.

    OMP_NUM_THREADS=1 python bench/vqa.py --out runs/vqa/bench            # the measured recipe (CPU, ~12 min)
    OMP_NUM_THREADS=1 python bench/vqa.py --out /tmp/vqa-smoke --smoke    # tiny sizes: checks the pipeline
"""
from __future__ import annotations

import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

from grounding import ARGS, MODEL
from staged import main_for

SIZES = {"full": {"train": 1000, "val": 200, "ground_steps": 300, "vqa_steps": 500, "long_steps": 3000, "batch": 8,
                  "vqa_batch": 16, "lr": 1e-3},
         "smoke": {"train": 16, "val": 8, "ground_steps": 4, "vqa_steps": 4, "long_steps": 8, "batch": 4,
                   "vqa_batch": 4, "lr": 1e-3}}
#: VQA rows: run name -> (label, whether it starts from the grounding-pretrained head, its steps' SIZES key)
HEADS = {"glipv2-vqa": ("glipv2: grounding pre-training, then VQA fine-tuning (init=)", True, "vqa_steps"),
         "vqa-scratch": ("glipv2 VQA fine-tuning from a fresh head (no grounding pre-training)", False, "vqa_steps"),
         "glipv2-vqa-long": ("glipv2: grounding pre-training, then 6x longer VQA fine-tuning (init=)", True,
                             "long_steps")}
TYPES = ("colour", "shape", "count", "relation")
ANSWER_TYPES = ("yes/no", "number", "other")


def _args(steps: int, batch: int, lr: float) -> str:
    return (f"--steps {steps} --batch-size {batch} --lr {lr} --warmup-steps {max(1, steps // 16)} "
            f"--checkpoint-every {steps} --log-every 20 --device cpu {ARGS}")


def stages(out: Path, s: dict) -> list[tuple[str, str, Path]]:
    """(name, command, output that marks it done), in order."""
    world, ground = out / "world", out / "glipv2-ground"
    found = [("world", f"clipdense data synth --out {world} --train {s['train']} --val {s['val']} "
                       "--classify-train-per-class 0 --classify-val-per-class 0 --grounding --vqa",
              world / "vqa" / "v2_mscoco_val_annotations.json"),
             ("train glipv2-ground", f"clipdense train --objective glipv2 {MODEL} --data {world} --out {ground} "
                                     f"{_args(s['ground_steps'], s['batch'], s['lr'])} "
                                     "--objective-arg inter_weight=1.0",
              ground / "metrics.jsonl")]
    for name, (_, init, steps) in HEADS.items():
        run = out / name
        start = f" --objective-arg init={ground}" if init else ""
        found += [(f"train {name}", f"clipdense train --objective glipv2 {MODEL} --data {world} --out {run} "
                                    f"{_args(s[steps], s['vqa_batch'], s['lr'])} --objective-arg data=vqa{start}",
                   run / "metrics.jsonl"),
                  (f"eval {name}", f"clipdense eval {MODEL} --data {world} --tasks vqa --head {run} --device cpu "
                                   f"--out {out / (name + '.json')} --no-progress", out / (name + ".json"))]
    return found


def prior_scores(world: Path, key: str) -> dict:
    """VQA accuracy on val of answering every question with the train split's most frequent answer for its
    ``key`` ("question_type", or "question": the exact text, falling back to its question type's)."""
    from clipdense.data.questions import Question
    from clipdense.evaluation.vqa import vqa_scores

    def load(split: str) -> list[tuple[str, Question]]:
        folder = world / "vqa"
        texts = {q["question_id"]: q["question"] for q in
                 json.loads((folder / f"v2_OpenEnded_mscoco_{split}_questions.json").read_text())["questions"]}
        anns = json.loads((folder / f"v2_mscoco_{split}_annotations.json").read_text())["annotations"]
        return [(texts[a["question_id"]], Question(a["question_id"], texts[a["question_id"]],
                                                   tuple(x["answer"] for x in a["answers"]),
                                                   a["multiple_choice_answer"], a["answer_type"], a["question_type"]))
                for a in anns]

    by_text: dict[str, Counter] = defaultdict(Counter)
    by_type: dict[str, Counter] = defaultdict(Counter)
    overall: Counter = Counter()
    for text, q in load("train"):
        by_text[text][q.answer] += 1
        by_type[q.question_type][q.answer] += 1
        overall[q.answer] += 1
    val = load("val")
    guesses = [((by_text.get(text) if key == "question" else None) or by_type.get(q.question_type) or overall
                ).most_common(1)[0][0] for text, q in val]
    return vqa_scores(guesses, [q for _, q in val])


def _row(label: str, result: dict, seconds: str) -> str:
    cells = [result["overall"]] + [result["per_question_type"].get(t) for t in TYPES] + \
        [result["per_answer_type"].get(t) for t in ANSWER_TYPES]
    return f"| {label} | " + " | ".join("–" if v is None else f"{v:.1f}" for v in cells) + f" | {seconds} |"


def table(out: Path, record: dict, sizes: dict) -> str:
    """VQA accuracy (%) overall, per question type and per answer type: the priors, then the heads."""
    world = out / "world"
    seconds = record.get("seconds", {})
    lines = ["| answers from | overall | colour | shape | count | relation | yes/no | number | other | train s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    if (world / "vqa" / "v2_mscoco_val_annotations.json").is_file():
        lines.append(_row("prior: most frequent train answer per question type (no image)",
                          prior_scores(world, "question_type"), "–"))
        lines.append(_row("prior: most frequent train answer per exact question (else per type; no image)",
                          prior_scores(world, "question"), "–"))
    for name, (label, init, _) in HEADS.items():
        path = out / f"{name}.json"
        if path.is_file():
            result = json.loads(path.read_text())["tasks"]["vqa"]
            train = seconds.get(f"train {name}", 0) + (seconds.get("train glipv2-ground", 0) if init else 0)
            lines.append(_row(label, result, f"{train:.0f}"))
            counts = result["counts"]
    if (out / "glipv2-vqa.json").is_file():
        lines += ["", f"{counts['questions']} val questions: " + ", ".join(
            f"{k} {v}" for k, v in counts["per_question_type"].items()) + "; answer vocabulary of "
            f"{result['answers']} answers (every train answer)."]
    return "\n".join(lines)


def main() -> int:
    return main_for(__doc__, "runs/vqa/bench", SIZES, stages, table)


if __name__ == "__main__":
    sys.exit(main())
