"""The demo's detection stage (issue 20): F-ViT on the start model beside F-ViT on a CLIPSelf backbone.

Both detectors train on the world's base things (its novel things never appear in a train scene) and are scored
on the val scenes: AP50 on novel / base / all things, and a picture of their boxes.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import torch
from PIL import Image

from ..config import atomic_write_bytes
from ..data.readers import open_reader
from ..evaluation import evaluate
from ..heads import load_head
from ..models import load_model
from ..tasks.detect import Detections, detect, draw_detections
from ..train.config import TrainConfig
from ..train.run import run_training
from .figures import grid_canvas

#: The F-ViT world recipe (bench/detection.py measures it at 800 steps): 128 px input (a backbone distilled at
#: another student size is read at 128 here, as in the bench), small FPN / head widths for a CPU, anchors
#: 4 x stride, fewer RPN proposals, scale jitter.
WORLD_DETECTOR: dict[str, Any] = {
    "image_size": 128, "fpn_channels": 64, "head_channels": 32, "fc_channels": 256, "roi_batch": 64,
    "rpn_batch": 128, "rpn_pre_nms_train": 500, "rpn_post_nms_train": 200, "rpn_pre_nms_test": 500,
    "rpn_post_nms_test": 200, "jitter": [0.5, 1.5], "templates": "world", "anchor_sizes": [16, 32, 64, 128, 256]}
#: a box is drawn in the picture when it scores at least this
FIGURE_MIN_SCORE = 0.3


def train_detectors(out: Path, backbones: dict[str, tuple[str, str | None]], base: dict[str, Any], steps: int,
                    batch: int, lr: float) -> dict[str, tuple[str, str | None, str]]:
    """Train one F-ViT head per backbone (label -> (model, pretrained)) into ``out/detector-N``; ``base`` holds the
    demo's data / device / seed settings. Returns label -> (model, pretrained, head run folder)."""
    detectors = {}
    for number, (label, (model, pretrained)) in enumerate(backbones.items()):
        run = out / f"detector-{number}"
        train = TrainConfig(**{**base, "objective": "fvit", "out": str(run), "model": model, "pretrained": pretrained,
                               "steps": steps, "batch_size": batch, "lr": lr, "warmup_steps": max(steps // 16, 1),
                               "checkpoint_every": steps, "objective_args": dict(WORLD_DETECTOR)})
        run_training(train)
        detectors[label] = (model, pretrained, str(run))
    return detectors


def evaluate_detectors(out: Path, detectors: dict[str, tuple[str, str | None, str]],
                       device: str | None) -> dict[str, Any]:
    """label -> ``clipdense eval --tasks detection`` result of each (model, pretrained, head) on the val scenes
    (also written to ``out/eval/detection.json``)."""
    results = {}
    for label, (model, pretrained, head) in detectors.items():
        bundle = load_model(model, pretrained, device=device)
        results[label] = evaluate(bundle, out / "world", tasks="detection", head=head, device=device, batch_size=16)
    (out / "eval").mkdir(exist_ok=True)
    atomic_write_bytes(out / "eval" / "detection.json", json.dumps(results, indent=1, default=str).encode())
    return results


def detection_lines(out: Path, detectors: dict[str, tuple[str, str | None, str]], results: dict[str, Any],
                    config: Any) -> list[str]:
    """The report's detection section: AP50 novel / base / all per detector, then a picture of their boxes."""
    rows = []
    for label, result in results.items():
        task = result["tasks"]["detection"]
        cells = [task["AP50"]["novel"], task["AP50"]["base"], task["AP50"]["all"], task["AP"]["all"]]
        rows.append(f"| {label} | " + " | ".join("–" if v != v else f"{v:.1f}" for v in cells) + " |")
    first = next(iter(results.values()))["tasks"]["detection"]
    figure = _figure(out, detectors, config)
    lines = ["## Open-vocabulary detection (F-ViT)", "",
             f"An F-ViT detector (frozen CLIP, a feature pyramid from its dense map, RPN and box heads; torchvision's "
             f"detection stack) trained for {config.detect_steps} steps x {config.detect_batch} images on the "
             f"world's {len(first['base'])} base thing classes; its {len(first['novel'])} novel classes never appear "
             "in a train scene and are named only at test time, scored by the frozen CLIP's pooled region embedding "
             "(the F-ViT ensemble). Once on the start model, once on a CLIPSelf backbone: the paper's claim is that "
             f"the refined backbone raises novel AP50. Box AP (COCOeval) on {first['num_images']} val scenes; with so "
             "few novel boxes a difference of a few points is noise.", "",
             "| detector, backbone | AP50 novel | AP50 base | AP50 all | AP all |", "|---|---|---|---|---|", *rows, ""]
    if figure:
        lines += [f"Left to right: the ground truth, then each detector's boxes scoring {FIGURE_MIN_SCORE} or more.",
                  "", f"![detections]({figure})", ""]
    return lines


def _figure(out: Path, detectors: dict[str, tuple[str, str | None, str]], config: Any, scale: int = 3) -> str | None:
    """Val images in rows: ground-truth boxes, then each detector's boxes (images upscaled for legibility)."""
    reader, _ = open_reader(str(out / "world"), {"boxes", "labels"}, "val", who="demo detection figure")
    count = min(config.overlays, len(reader))
    if count == 0:
        return None
    things = [c for c, t in zip(reader.classes, reader.isthing) if t]
    samples = [reader[i] for i in range(count)]
    rows = [[_draw(s.image, _truth(s, reader.classes, things), scale)] for s in samples]
    for model, pretrained, head in detectors.values():
        bundle = load_model(model, pretrained, device=config.device)
        detector = load_head(head, bundle)
        found = detect(bundle, [s.image for s in samples], things, head=detector, min_score=FIGURE_MIN_SCORE)
        for row, sample, boxes in zip(rows, samples, found):
            row.append(_draw(sample.image, boxes, scale))
    canvas = grid_canvas(rows, ["ground truth", *detectors], things, set())
    target = out / "figures" / "detections.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(target)
    return str(target.relative_to(out))


def _draw(image: Image.Image, found: Detections, scale: int) -> Image.Image:
    big = image.convert("RGB").resize((image.width * scale, image.height * scale), Image.NEAREST)
    return draw_detections(big, Detections(found.boxes * scale, found.scores, found.labels, found.classes))


def _truth(sample: Any, classes: Sequence[str], things: list[str]) -> Detections:
    """A sample's thing boxes as score-1 detections, labelled in the detectors' index space (thing classes)."""
    keep = [i for i, label in enumerate(sample.labels.tolist()) if classes[label] in things]
    labels = torch.tensor([things.index(classes[int(sample.labels[i])]) for i in keep], dtype=torch.long)
    return Detections(sample.boxes[keep].reshape(-1, 4), torch.ones(len(keep)), labels, things)
