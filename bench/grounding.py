"""Phrase grounding on the synthetic world (issue 26): GLIP heads on the shipped CLIP -- deep fusion vs none (three
seeds), self-training on a teacher's pseudo-labels vs gold only, GLIPv2's inter-image loss -> Recall@1/5/10 (ANY-box,
MERGED-box; Flickr30k Entities protocol) on the val split, whose captions use synonyms and novel words; the heads as
detectors (AP50 novel / base / all on the world's held-out classes); CPU time.

Every stage is a `clipdense` command, run as written in the table (so the table is its own recipe), timed, and
recorded in OUT/results.json after each stage (a re-run skips stages whose outputs exist). Prints the Markdown
table for docs/results/grounding.md.

    python bench/grounding.py --out runs/grounding/bench          # the measured recipe (CPU)
    python bench/grounding.py --out /tmp/grounding-smoke --smoke  # tiny sizes: checks the pipeline (a minute)
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from staged import main_for

MODEL = "--model tiny-vit-t8 --pretrained synthworld"
#: the world recipe of a GLIP head on a CPU: 128 px input, narrow towers, two fusion layers (GLIP: 6), layer-scale
#: started at 0.1 (GLIP's 1e-4 leaves a short run with fusion that has barely begun to act)
GLIP_WORLD = {"channels": 64, "layers": 2, "fusion_dim": 64, "fusion_heads": 4, "layer_scale": 0.1,
              "image_size": 128}
ARGS = " ".join(f"--objective-arg {k}={v}" for k, v in GLIP_WORLD.items())
SIZES = {"full": {"train": 1000, "val": 200, "corpus": 1000, "steps": 600, "batch": 8, "lr": 1e-3, "seeds": 3},
         "smoke": {"train": 16, "val": 8, "corpus": 8, "steps": 4, "batch": 4, "lr": 1e-3, "seeds": 2}}
#: grounding rows: run name -> (label, objective, extra train args, data: "gold" or "pseudo", seeds run).
#: Deep fusion vs none is a small effect here, so it runs three seeds; the others two (CPU time).
VARIANTS = {
    "glip-fusion": ("GLIP, deep fusion (2 layers)", "glip", "--objective-arg fusion=true", "gold", 3),
    "glip-nofusion": ("GLIP, no fusion (same towers)", "glip", "--objective-arg fusion=false", "gold", 3),
    "glip-selftrain": ("GLIP student: gold + teacher pseudo-labels of a caption-only world", "glip",
                       "--objective-arg fusion=true", "pseudo", 2),
    "glipv2": ("GLIPv2 losses (+ inter-image region-word contrastive, weight 1)", "glipv2",
               "--objective-arg fusion=true --objective-arg inter_weight=1.0", "gold", 2),
}


def run_name(name: str, seed: int) -> str:
    """The run folder of a variant's seed (seed 0 keeps the plain name)."""
    return name if seed == 0 else f"{name}-s{seed}"


def _train_args(s: dict[str, int]) -> str:
    return (f"--steps {s['steps']} --batch-size {s['batch']} --lr {s['lr']} --warmup-steps "
            f"{max(1, s['steps'] // 16)} --checkpoint-every {s['steps']} --log-every 20 --device cpu {ARGS}")


def _self_training(out: Path, s: dict[str, int]) -> list[tuple[str, str, Path]]:
    """A caption-only corpus (another world's captions and images, no boxes used), boxed by the seed-0 fusion head
    (the teacher), beside the gold data: what the student trains on."""
    corpus, pseudo = out / "corpus", out / "pseudo" / "pseudo.json"
    return [("corpus", f"clipdense data synth --out {corpus} --train {s['corpus']} --val 2 --seed 1 "
                       "--classify-train-per-class 0 --classify-val-per-class 0", corpus / "world.json"),
            ("pseudo-label", f"clipdense ground --pseudo-label {corpus / 'train.csv'} --head {out / 'glip-fusion'} "
                             f"--out {pseudo} --gold {out / 'world'} --min-score 0.5 --device cpu",
             pseudo.with_suffix(".yaml"))]


def stages(out: Path, sizes: dict[str, int]) -> list[tuple[str, str, Path]]:
    """(name, command, output that marks it done), in order: seed 0 of every row first, then the other seeds."""
    world, s = out / "world", sizes
    val = f"modulated-coco:images={world / 'val' / 'images'},annotations={world / 'grounding' / 'mdetr_val.json'}"
    out_stages = [("world", f"clipdense data synth --out {world} --train {s['train']} --val {s['val']} "
                            "--classify-train-per-class 0 --classify-val-per-class 0 --grounding",
                   world / "grounding" / "mdetr_val.json")]
    # detection: the grounding-trained head on boxes it never saw (zero-shot transfer), and a head trained on the
    # world's detection data as prompts over its base classes (the OV-COCO protocol's split)
    detection = out / "glip-detection"
    runs = [(name, seed) for seed in range(s["seeds"]) for name, row in VARIANTS.items()
            if seed < row[4]]
    for name, seed in runs:
        _, objective, extra, data, _ = VARIANTS[name]
        run = out / run_name(name, seed)
        if data == "pseudo" and seed == 0:
            out_stages += _self_training(out, s)
        source = out / "pseudo" / "pseudo.yaml" if data == "pseudo" else world
        out_stages += [
            (f"train {run.name}", f"clipdense train --objective {objective} {MODEL} --data {source} --out {run} "
                                  f"{_train_args(s)} --seed {seed} {extra}", run / "metrics.jsonl"),
            (f"eval {run.name}", f"clipdense eval {MODEL} --data {val} --tasks grounding --head {run} --device cpu "
                                 f"--out {out / (run.name + '.json')} --no-progress", out / (run.name + ".json"))]
        if (name, seed) == ("glip-nofusion", 0):
            out_stages += [
                ("detect glip-fusion", f"clipdense eval {MODEL} --data {world} --tasks detection --head "
                                       f"{out / 'glip-fusion'} --device cpu --out {out / 'glip-fusion-detection.json'}"
                                       " --no-progress", out / "glip-fusion-detection.json"),
                ("train glip-detection", f"clipdense train --objective glip {MODEL} --data {world} --out {detection} "
                                         f"{_train_args(s)} --objective-arg data=detection",
                 detection / "metrics.jsonl"),
                ("detect glip-detection", f"clipdense eval {MODEL} --data {world} --tasks detection --head "
                                          f"{detection} --device cpu --out {out / 'glip-detection-detection.json'} "
                                          "--no-progress", out / "glip-detection-detection.json")]
    return out_stages


def _cell(values: list[float]) -> str:
    """Mean (± population std over seeds when there are several)."""
    if len(values) == 1:
        return f"{values[0]:.1f}"
    mean = sum(values) / len(values)
    std = (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5
    return f"{mean:.1f} ± {std:.1f}"


def grounding_rows(out: Path, record: dict, seeds: int) -> list[str]:
    """Markdown rows: variant, seeds, R@1/5/10 ANY-box, R@1/5 MERGED-box, train and eval seconds (seed 0)."""
    lines = ["| head | seeds | R@1 any | R@5 any | R@10 any | R@1 merged | R@5 merged | train s | eval s |",
             "|---|---|---|---|---|---|---|---|---|"]
    seconds = record.get("seconds", {})
    for key, row in VARIANTS.items():
        found = [json.loads(p.read_text())["tasks"]["grounding"]
                 for p in (out / f"{run_name(key, seed)}.json" for seed in range(seeds)) if p.is_file()]
        if not found:
            continue
        cells = [_cell([t[kind][k] for t in found]) for kind, k in
                 (("any", "R@1"), ("any", "R@5"), ("any", "R@10"), ("merged", "R@1"), ("merged", "R@5"))]
        lines.append(f"| {row[0]} | {len(found)} | " + " | ".join(cells) +
                     f" | {seconds.get('train ' + key, 0):.0f} | {seconds.get('eval ' + key, 0):.0f} |")
    return lines


def pseudo_precision(out: Path) -> str:
    """How many of the teacher's pseudo boxes overlap a true box of the corpus world (never shown to the student) at
    IoU >= 0.5 (localisation only: the phrase is not checked against the box's class)."""
    pseudo, truth = out / "pseudo" / "pseudo.json", out / "corpus" / "annotations" / "instances_train.json"
    if not pseudo.is_file() or not truth.is_file():
        return ""
    import torch
    from torchvision.ops import box_iou

    labels, true = json.loads(pseudo.read_text()), json.loads(truth.read_text())
    corpus_images = (out / "corpus").resolve()
    names = {im["id"]: Path(im["file_name"]).name for im in labels["images"]
             if Path(im["file_name"]).is_relative_to(corpus_images)}
    image_of = {im["file_name"]: im["id"] for im in true["images"]}
    boxes: dict[int, list[list[float]]] = {}
    for a in true["annotations"]:
        x, y, w, h = a["bbox"]
        boxes.setdefault(a["image_id"], []).append([x, y, x + w, y + h])
    hits = total = 0
    for a in labels["annotations"]:
        if a["image_id"] in names:
            x, y, w, h = a["bbox"]
            gt = torch.tensor(boxes.get(image_of[names[a["image_id"]]], [[0.0] * 4]))
            total += 1
            hits += int(box_iou(torch.tensor([[x, y, x + w, y + h]]), gt).max() >= 0.5)
    share = 100 * hits / max(total, 1)
    return (f"pseudo-labels: {len(names)} corpus images labelled, {total} boxes, {share:.1f} % of them at IoU >= 0.5 "
            "with a true box of their image")


def table(out: Path, record: dict, sizes: dict[str, int]) -> str:
    """The grounding table, the pseudo-labels' precision, then AP50 novel/base/all of the GLIP heads as detectors."""
    lines = grounding_rows(out, record, sizes["seeds"]) + ["", pseudo_precision(out)]
    seconds = record.get("seconds", {})
    lines += ["", "| GLIP head trained on | AP50 novel | AP50 base | AP50 all | AP all | train s |",
              "|---|---|---|---|---|---|"]
    for key, label in (("glip-fusion", "grounding captions only (zero-shot transfer; every class unseen)"),
                       ("glip-detection", "detection prompts over the base classes")):
        path = out / f"{key}-detection.json"
        if path.is_file():
            task = json.loads(path.read_text())["tasks"]["detection"]
            ap50 = task["AP50"]
            cells = [ap50["novel"], ap50["base"], ap50["all"], task["AP"]["all"]]
            lines.append(f"| {label} | " + " | ".join("–" if v is None or v != v else f"{v:.1f}" for v in cells) +
                         f" | {seconds.get('train ' + key, 0):.0f} |")
    return "\n".join(lines)


def main() -> int:
    return main_for(__doc__, "runs/grounding/bench", SIZES, stages, table)


if __name__ == "__main__":
    sys.exit(main())
