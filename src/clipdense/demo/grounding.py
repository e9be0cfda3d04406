"""`clipdense demo grounding`: a GLIP head on the shipped tiny CLIP finds what sentences name (about 2 minutes).

A small world is written with its grounding layouts (modulated COCO + Flickr30k Entities), a GLIP head trains on
the train captions' phrases through the engine (`clipdense train --objective glip`), and is scored in the Flickr30k
Entities protocol (R@1/5/10, ANY- and MERGED-box) on the val captions, which use synonyms and novel words. The
report shows val scenes with each phrase of their caption boxed in its colour, and the same head used as a detector
with a class list written as a GLIP prompt.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from PIL import Image

from ..data import SynthConfig, write_world
from ..data.readers import open_data
from ..data.world.grounding import write_grounding
from ..evaluation.grounding import evaluate_grounding
from ..heads import load_head
from ..models import load_model
from ..tasks.detect import detect, draw_detections
from ..tasks.ground import draw_grounding, ground, keep_best
from ..train.config import TrainConfig
from ..train.run import run_training

WORLD = dict(train=300, val=40, image_size=64, classify_train_per_class=0, classify_val_per_class=0, seed=5)
HEAD = {"channels": 64, "layers": 2, "fusion_dim": 64, "fusion_heads": 4, "layer_scale": 0.1, "image_size": 64}
STEPS = 300
SHOWN = 6


def _pictures(bundle: object, head: object, reader: object, out: Path, count: int) -> list[str]:
    """Val scenes with their caption's phrases boxed (best box per phrase), and the same head as a detector."""
    figures = out / "figures"
    figures.mkdir(exist_ok=True)
    lines = ["## Sentences and their boxes", "", "Each phrase of the caption in its colour, its best box.", ""]
    shown = 0
    for index in range(len(reader)):
        sample = reader[index]
        if not len(sample.phrases) or shown >= count:
            continue
        found = keep_best(ground(bundle, sample.image, sample.caption, head=head, spans=sample.phrases.spans),
                          top=1)
        path = figures / f"ground-{shown}.png"
        draw_grounding(sample.image.resize((192, 192), Image.NEAREST), _scaled(found, 3.0)).save(path)
        lines += [f"![{sample.caption}](figures/{path.name})", "",
                  f"*{sample.caption}* — " + "; ".join(f"{p.text}: {float(p.scores[0]) if len(p.scores) else 0:.2f}"
                                                       for p in found.phrases), ""]
        shown += 1
    return lines


def _scaled(found, factor: float):
    from ..tasks.ground import GroundedPhrase, Grounding
    return Grounding(found.sentence, [GroundedPhrase(p.text, p.spans, p.boxes * factor, p.scores)
                                      for p in found.phrases])


def run_grounding_demo(out: Path, log: Callable[[str], None]) -> Path:
    """World with grounding -> GLIP training -> R@k on val -> pictures -> report.md."""
    out.mkdir(parents=True, exist_ok=True)
    world = out / "world"
    if not (world / "grounding" / "mdetr_val.json").is_file():
        write_world(SynthConfig(out=str(world), **WORLD), overwrite=True)
        write_grounding(world)
    log(f"world: {world} (with grounding/)")
    start = time.perf_counter()
    run = out / "run"
    config = TrainConfig(objective="glip", data=str(world), model="tiny-vit-t8", pretrained="synthworld",
                         out=str(run), steps=STEPS, batch_size=8, lr=1e-3, warmup_steps=20, checkpoint_every=STEPS,
                         log_every=50, seed=0, device="cpu", objective_args=dict(HEAD))
    if not (run / "checkpoints").is_dir():
        run_training(config)
    seconds = time.perf_counter() - start
    log(f"trained the GLIP head ({STEPS} steps) in {seconds:.0f} s")
    bundle = load_model("tiny-vit-t8", pretrained="synthworld", device="cpu")
    head = load_head(run, bundle)
    reader, _, _ = open_data(str(world), {"boxes", "phrases"}, "val")
    result = evaluate_grounding(head, reader)
    log(f"grounding on {result['num_phrases']} val phrases: R@1 {result['any']['R@1']:.1f} (any box), "
        f"{result['merged']['R@1']:.1f} (merged)")
    pictures = _pictures(bundle, head, reader, out, SHOWN)
    sample = next(reader[i] for i in range(len(reader)) if len(reader[i].boxes))
    classes = sorted({p for i in range(min(len(reader), 10)) for p in _names(reader[i])})[:8] or ["red circle"]
    found = detect(bundle, sample.image, classes, head=head, min_score=0.2)
    draw_detections(sample.image.resize((192, 192), Image.NEAREST),
                    type(found)(found.boxes * 3.0, found.scores, found.labels, found.classes)).save(
        out / "figures" / "detect.png")
    report = out / "report.md"
    report.write_text("\n".join([
        "# Phrase grounding with GLIP", "",
        f"A GLIP head (2 fusion layers, FCOS-style heads) on the frozen shipped tiny CLIP, trained {STEPS} steps on "
        f"the phrases of {WORLD['train']} scene captions in {seconds:.0f} s; scored on {result['num_phrases']} "
        f"phrases of {result['num_images']} val captions (synonyms and novel words).", "",
        "| boxes | R@1 | R@5 | R@10 |", "|---|---|---|---|",
        *[f"| {k} | {result[k]['R@1']:.1f} | {result[k]['R@5']:.1f} | {result[k]['R@10']:.1f} |"
          for k in ("any", "merged")], "", *pictures,
        "## The same head as a detector", "", f"Prompt: *{'. '.join(classes)}.*", "", "![detections](figures/detect.png)",
        ""]))
    log(f"report: {report}")
    return report


def _names(sample) -> list[str]:
    return [sample.phrases.phrase(i).split(" ", 1)[-1] for i in range(len(sample.phrases))]
