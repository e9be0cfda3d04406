"""CLIP-guided generation judged by a CLIP it was not optimised against (issue 31).

CLIPDraw drawings are optimised against the shipped tiny CLIP (``tiny-vit-t8`` / ``synthworld``) and scored by a
*judge*: a second tiny-vit-t8 trained from random init with another seed, world and data order, so adversarial
pixels that fool the guide do not score by themselves. For a fixed set of prompts naming world classes:

- CLIP score: cos(picture, its prompt), under the guide and under the judge;
- R-precision: the fraction of drawings whose own prompt is the judge's (or guide's) top-1 among all prompts.

VQGAN-CLIP pictures (the shipped VQGAN's latent optimised against the guide) are scored the same way.

The grounded check: clipdense's own zero-shot segmenter (``segment_logits`` on the guide, ``naclip`` — the
training-free mode that names most on this CLIP, see segmentation-heads.md; ``maskclip`` finds 1 of the 8 real
photos' objects, naclip 5 — and the world's templates) labels every pixel of a picture among the world's 68 thing
classes, its 7 stuff classes and "white background" (the CLIPDraw canvas). A picture is *found* when the prompt's
object (for a relation prompt, each of its two objects) is among the thing classes with the most pixels (top-1;
top-2 for relation prompts); stuff and "white background" pixels are not counted. A relation prompt's *relation
holds* when both are found and the centroid of the first object's pixels lies above / below / left of / right of the
second's, as the prompt says.

CLIPasso sketches of world photos (single objects, a world the judge never saw) are scored by the judge's
cos(sketch, photo) and sketch→photo R@1 among all the photos; rows: saliency vs random start.

    OMP_NUM_THREADS=1 python bench/generation.py --judge RUN_OR_FILE --out docs/results/generation.json \
        --gallery docs/results/generation-gallery.png
    # without --judge a judge is trained first into --work (a world of 30 000 single objects, 1500 x 128 steps)
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from PIL import Image, ImageDraw

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import clipdense as cd  # noqa: E402
from clipdense.cli.main import main as clipdense_main  # noqa: E402
from clipdense.generation.clipasso import SketchOptions, photo_tensor, saliency_map, sketch  # noqa: E402
from clipdense.generation.clipdraw import DrawOptions, clipdraw  # noqa: E402
from clipdense.generation.guidance import Augmentations, ClipGuide, resize  # noqa: E402
from clipdense.generation.raster import render  # noqa: E402
from clipdense.generation.svg import to_image  # noqa: E402
from clipdense.generation.vqgan import VQGANClipOptions, load_vqgan, start_latent, vqgan_clip  # noqa: E402

#: the fixed prompt set: world classes with distinct colours and shapes, two composite objects, and relations
#: between two objects in the world captions' own words
SINGLE_PROMPTS = ("a red circle", "a blue square", "a green triangle", "a yellow star", "a purple heart",
                  "an orange cross", "a house", "a snowman")
RELATION_PROMPTS = ("a red circle above a blue star", "a yellow star to the left of a green square",
                    "a purple heart below an orange cross", "a blue square to the right of a red triangle")
PROMPTS = SINGLE_PROMPTS + RELATION_PROMPTS
#: the segmenter's dense mode for the grounded check
GROUNDING_MODE = "naclip"
#: relation words -> (axis: 0 = x, 1 = y, sign): the first object's centroid minus the second's has that sign
RELATIONS = {"above": (1, -1), "below": (1, 1), "to the left of": (0, -1), "to the right of": (0, 1)}
#: the judge's recipe (command lines, so it can be rerun by hand)
JUDGE_WORLD = ["--config", "configs/synthworld-single-world.yaml", "--train", "30000", "--val", "300", "--seed", "5",
               "--classify-train-per-class", "0", "--classify-val-per-class", "4", "--shard-size", "5000"]
JUDGE_TRAIN = ["--objective", "clip", "--model", "tiny-vit-t8", "--steps", "1500", "--batch-size", "128", "--lr", "0.002",
               "--warmup-steps", "100", "--seed", "11", "--device", "cpu", "--num-workers", "1",
               "--checkpoint-every", "500", "--log-every", "100"]


@dataclass(frozen=True)
class DrawRow:
    name: str
    strokes: int
    steps: int
    augmentations: int = 4


DRAW_ROWS = (
    DrawRow("initialisation (0 steps)", 16, 0),
    DrawRow("16 strokes, 100 steps", 16, 100),
    DrawRow("16 strokes, 100 steps, no augmentation", 16, 100, 0),
    DrawRow("32 strokes, 100 steps", 32, 100),
    DrawRow("16 strokes, 200 steps", 16, 200),
)
SMOKE_DRAW_ROWS = (DrawRow("init", 2, 0), DrawRow("2 strokes, 2 steps", 2, 2), DrawRow("no aug", 2, 2, 0))
#: VQGAN-CLIP rows: (name, steps, cutouts); 0 steps = the random-token start
VQGAN_ROWS = (("VQGAN-CLIP start (0 steps)", 0, 8), ("VQGAN-CLIP, 100 steps, 8 cutouts", 100, 8),
              ("VQGAN-CLIP, 100 steps, no augmentation", 100, 0))
SMOKE_VQGAN_ROWS = (("vqgan start", 0, 2), ("vqgan 2 steps", 2, 2))


def train_judge(work: Path) -> Path:
    """Train the judge (same calls a user makes: `clipdense data synth`, `clipdense train`); returns its run."""
    world, run = work / "judge-world", work / "judge-run"
    if not (world / "world.json").exists():
        assert clipdense_main(["data", "synth", *JUDGE_WORLD, "--out", str(world), "--overwrite"]) == 0
    if not any(run.glob("checkpoints/*/model.safetensors")):
        assert clipdense_main(["train", *JUDGE_TRAIN, "--data", str(world), "--out", str(run)]) == 0
    return run


def prompt_matrix(guide: ClipGuide, pictures: torch.Tensor, prompts: tuple[str, ...]) -> dict[str, float]:
    """Mean cos(picture i, prompt i) and R-precision (own prompt ranked first) of pictures made for prompts."""
    scores = guide.score(pictures, list(prompts))
    own = scores.diagonal()
    return {"clip_score": float(own.mean()), "r_precision": float((scores.argmax(1) == torch.arange(len(prompts)))
                                                                  .float().mean())}


def prompt_objects(prompt: str, things: list[str]) -> tuple[list[str], str | None]:
    """The thing classes a prompt names, in order, and its relation word (None for one object)."""
    relation = next((word for word in RELATIONS if f" {word} " in prompt), None)
    parts = prompt.split(f" {relation} ") if relation else [prompt]
    names = []
    for part in parts:
        words = part.strip().removeprefix("a ").removeprefix("an ").strip()
        if words not in things:
            raise ValueError(f"prompt {prompt!r}: {words!r} is not a world thing class")
        names.append(words)
    return names, relation


@torch.no_grad()
def grounded(guide: ClipGuide, pictures: torch.Tensor, prompts: tuple[str, ...], things: list[str],
             stuff: list[str]) -> dict[str, float]:
    """The grounded check (module docstring): fraction of pictures whose named objects the segmenter finds, and
    for relation prompts the fraction where the relation holds between the found objects' centroids."""
    from clipdense.tasks import segment_logits

    classes = things + stuff + ["white background"]
    classifier = cd.text_classifier(guide.bundle, classes, templates="world")
    logits = segment_logits(guide.model, guide.normalise(resize(pictures, guide.size)), classifier, GROUNDING_MODE)
    return grounded_labels(logits.argmax(1), prompts, things, len(classes))


def grounded_labels(labels: torch.Tensor, prompts: tuple[str, ...], things: list[str], num_classes: int
                    ) -> dict[str, float]:
    """The grounded check on label maps (B, h, w) whose first ``len(things)`` labels are the thing classes."""
    found, holds, relations = 0, 0, 0
    for labels_i, prompt in zip(labels, prompts):
        names, relation = prompt_objects(prompt, things)
        counts = torch.bincount(labels_i.flatten(), minlength=num_classes)[:len(things)]
        top = [things[i] for i in counts.argsort(descending=True)[:len(names)] if counts[i] > 0]
        ok = all(name in top for name in names)
        found += ok
        if relation is not None:
            relations += 1
            if ok:
                axis, sign = RELATIONS[relation]
                centre = [(labels_i == things.index(n)).nonzero().float().mean(0)[1 - axis] for n in names]
                holds += bool(sign * float(centre[0] - centre[1]) > 0)
    return {"found": found / len(prompts), "relation_holds": holds / relations if relations else float("nan")}


def score_row(guide: ClipGuide, judge: ClipGuide, batch: torch.Tensor, prompts: tuple[str, ...],
              world: dict[str, list[str]]) -> dict:
    """CLIP score and R-precision (guide and judge, all prompts and relation prompts alone) and the grounded check."""
    relation = [i for i, p in enumerate(prompts) if p in RELATION_PROMPTS]
    result = {"guide": prompt_matrix(guide, batch, prompts), "judge": prompt_matrix(judge, batch, prompts),
              "grounded": grounded(guide, batch, prompts, world["things"], world["stuff"])}
    if relation:
        for name, clip in (("guide", guide), ("judge", judge)):
            scores = clip.score(batch[relation], list(prompts))
            own = torch.tensor(relation)
            result[f"{name}_relations"] = {
                "clip_score": float(scores[torch.arange(len(relation)), own].mean()),
                "r_precision": float((scores.argmax(1) == own).float().mean())}
    return result


def draw_rows(guide: ClipGuide, judge: ClipGuide, rows: tuple[DrawRow, ...], canvas: int, prompts: tuple[str, ...],
              world: dict[str, list[str]]) -> tuple[list[dict], dict[str, torch.Tensor]]:
    results, pictures_by_row = [], {}
    for row in rows:
        start = time.perf_counter()
        pictures = []
        for prompt in prompts:
            rates = {} if row.steps else {"lr_points": 0.0, "lr_width": 0.0, "lr_colour": 0.0}
            options = DrawOptions(strokes=row.strokes, steps=max(row.steps, 1), canvas=canvas, seed=0,
                                  augment=replace(Augmentations(), count=row.augmentations), **rates)
            drawing, _ = clipdraw(guide.bundle, prompt, options)
            pictures.append(render(drawing))
        seconds = (time.perf_counter() - start) / len(prompts)
        batch = torch.stack(pictures)
        pictures_by_row[row.name] = batch
        result = {"row": row.name, "strokes": row.strokes, "steps": row.steps, "augmentations": row.augmentations,
                  "seconds_per_drawing": round(seconds, 2), **score_row(guide, judge, batch, prompts, world)}
        results.append(result)
        print(json.dumps(result), flush=True)
    return results, pictures_by_row


def vqgan_rows(guide: ClipGuide, judge: ClipGuide, rows: tuple[tuple[str, int, int], ...], canvas: int,
               prompts: tuple[str, ...], world: dict[str, list[str]]) -> tuple[list[dict], dict[str, torch.Tensor]]:
    """VQGAN-CLIP with the shipped VQGAN, one picture per prompt (seed 0) per row; 0 steps = the start."""
    vqgan = load_vqgan()
    results, pictures_by_row = [], {}
    for name, steps, cutouts in rows:
        start = time.perf_counter()
        pictures = []
        for prompt in prompts:
            if steps:
                options = VQGANClipOptions(steps=steps, canvas=canvas, cutouts=cutouts, seed=0)
                pictures.append(render(vqgan_clip(guide.bundle, prompt, options, vqgan=vqgan)[0]))
            else:
                with torch.no_grad():
                    z = start_latent(vqgan, canvas, torch.Generator().manual_seed(0))
                    pictures.append(vqgan.decode(z)[0].clamp(0, 1))
        batch = torch.stack(pictures)
        pictures_by_row[name] = batch
        result = {"row": name, "steps": steps, "cutouts": cutouts,
                  "seconds_per_picture": round((time.perf_counter() - start) / len(prompts), 2),
                  **score_row(guide, judge, batch, prompts, world)}
        results.append(result)
        print(json.dumps(result), flush=True)
    return results, pictures_by_row


def sketch_rows(guide: ClipGuide, judge: ClipGuide, photos: list[Image.Image], strokes: int, steps: int,
                canvas: int) -> tuple[list[dict], dict[str, torch.Tensor]]:
    targets = torch.stack([photo_tensor(p, canvas) for p in photos])
    with torch.no_grad():
        photo_embeds = judge.embed_images(torch.nn.functional.interpolate(targets, size=judge.size, mode="bilinear",
                                                                          antialias=True, align_corners=False))
    results, pictures_by_row = [], {"photos": targets}
    for init, background in (("saliency", "relevance"), ("random", "relevance"), ("saliency", "keep")):
        start = time.perf_counter()
        options = SketchOptions(canvas=canvas, init=init, seeds=1, seed=0, background=background)
        drawings = [sketch(guide.bundle, photo, strokes, steps, options) for photo in photos]
        batch = torch.stack([render(d) for d in drawings])
        with torch.no_grad():
            embeds = judge.embed_images(torch.nn.functional.interpolate(batch, size=judge.size, mode="bilinear",
                                                                        antialias=True, align_corners=False))
        similarity = embeds @ photo_embeds.T
        name = f"{init} start" + (", background kept" if background == "keep" else "")
        result = {"row": f"CLIPasso, {name}", "strokes": strokes, "steps": steps,
                  "seconds_per_sketch": round((time.perf_counter() - start) / len(photos), 2),
                  "guide_loss": sum(float(d.meta["loss"]) for d in drawings) / len(drawings),
                  "judge_cos_to_photo": float(similarity.diagonal().mean()),
                  "judge_sketch_to_photo_r1": float((similarity.argmax(1) == torch.arange(len(photos))).float().mean())}
        pictures_by_row[name] = batch
        results.append(result)
        print(json.dumps(result), flush=True)
    return results, pictures_by_row


def gallery(rows: list[tuple[str, torch.Tensor]], labels: tuple[str, ...], path: Path, cell: int = 96) -> None:
    """A grid: one row per (name, pictures), one column per label."""
    left, top = 190, 18
    sheet = Image.new("RGB", (left + cell * len(labels), top + cell * len(rows)), "white")
    ink = ImageDraw.Draw(sheet)
    for j, label in enumerate(labels):
        ink.text((left + j * cell + 2, 3), label[:16], fill="black")
    for i, (name, pictures) in enumerate(rows):
        ink.text((3, top + i * cell + cell // 2 - 6), name[:30], fill="black")
        for j, picture in enumerate(pictures[:len(labels)]):
            sheet.paste(to_image(picture).resize((cell - 4, cell - 4), Image.NEAREST),
                        (left + j * cell + 2, top + i * cell + 2))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--judge", default=None, help="judge CLIP: a run dir or .safetensors (default: train one)")
    parser.add_argument("--work", default="bench-work/generation", help="where a judge is trained when not given")
    parser.add_argument("--out", default=None, help="JSON results")
    parser.add_argument("--gallery", default=None, help="PNG gallery of the drawings and sketches")
    parser.add_argument("--canvas", type=int, default=64, help="CLIPDraw canvas side (default 64 = the CLIP's input)")
    parser.add_argument("--sketch-photos", type=int, default=8)
    parser.add_argument("--sketch-steps", type=int, default=80)
    parser.add_argument("--sketch-canvas", type=int, default=128)
    parser.add_argument("--smoke", action="store_true", help="random-init judge, tiny rows (checks the script)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    guide = ClipGuide(cd.load_model("tiny-vit-t8", pretrained="synthworld", device="cpu"))
    if args.smoke:
        judge_spec, rows, prompts = "tiny-vit-t8 (random init)", SMOKE_DRAW_ROWS, PROMPTS[:2] + PROMPTS[-1:]
        judge = ClipGuide(cd.load_model("tiny-vit-t8", device="cpu"))
        args.sketch_photos, args.sketch_steps, args.sketch_canvas, args.canvas = 2, 2, 32, 32
    else:
        judge_spec = args.judge or str(train_judge(Path(args.work)))
        judge, rows, prompts = ClipGuide(cd.load_model(judge_spec, device="cpu")), DRAW_ROWS, PROMPTS
    photos = world_photos(Path(args.work) / "sketch-world", args.sketch_photos)
    world = json.loads((Path(args.work) / "sketch-world" / "world.json").read_text())
    world = {"things": list(world["things"]), "stuff": list(world["stuff"])}
    draw_results, draw_pictures = draw_rows(guide, judge, rows, args.canvas, prompts, world)
    vqgan_results, vqgan_pictures = vqgan_rows(guide, judge, SMOKE_VQGAN_ROWS if args.smoke else VQGAN_ROWS,
                                               args.canvas, prompts, world)
    sketch_results, sketch_pictures = sketch_rows(guide, judge, photos, 16 if not args.smoke else 2,
                                                  args.sketch_steps, args.sketch_canvas)
    photo_prompts = tuple(f"a {name}" for name in SKETCH_CLASSES[:len(photos)])
    report = {"guide": "tiny-vit-t8 / synthworld", "judge": judge_spec, "prompts": list(prompts),
              "clipdraw": draw_results, "vqgan_clip": vqgan_results, "clipasso": sketch_results,
              "grounded_on_photos": grounded(guide, sketch_pictures["photos"], photo_prompts, world["things"],
                                             world["stuff"]),
              "zero_shot_on_sketch_world": {"guide": zero_shot(guide, Path(args.work) / "sketch-world"),
                                            "judge": zero_shot(judge, Path(args.work) / "sketch-world")}}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1))
    if args.gallery:
        chosen = [name for name in draw_pictures if name.startswith("16 strokes") or args.smoke]
        grid = [(name, draw_pictures[name]) for name in chosen]
        grid += [(name, pictures) for name, pictures in vqgan_pictures.items() if "start" not in name or args.smoke]
        grid += [("CLIPasso: photo", sketch_pictures["photos"])] + [
            (name, pictures) for name, pictures in sketch_pictures.items() if name != "photos"]
        labels = tuple(p.removeprefix("a ").removeprefix("an ") for p in prompts)
        gallery(grid, labels + ("",) * max(0, len(photos) - len(labels)), Path(args.gallery))
    print(json.dumps(report["zero_shot_on_sketch_world"]))
    return 0


#: the photos CLIPasso sketches: one single-object image per class from a world none of the CLIPs trained on
SKETCH_CLASSES = ("red circle", "blue square", "green triangle", "yellow star", "purple heart", "orange cross",
                  "house", "snowman")


def world_photos(folder: Path, count: int) -> list[Image.Image]:
    """``count`` single-object photos (first val image of SKETCH_CLASSES) from a world of seed 1."""
    if not (folder / "world.json").exists():
        assert clipdense_main(["data", "synth", "--out", str(folder), "--train", "1", "--val", "1", "--seed", "1",
                               "--image-size", "128", "--classify-train-per-class", "0",
                               "--classify-val-per-class", "1", "--overwrite"]) == 0
    return [Image.open(next((folder / "classify" / "val" / name).glob("*.png"))).convert("RGB")
            for name in SKETCH_CLASSES[:count]]


def zero_shot(clip: ClipGuide, world: Path) -> dict[str, float]:
    """Top-1 of ``clip`` on the sketch world's single-object val images among all its thing classes
    ("a photo of a {class}."): how well each CLIP reads the world at all."""
    things = json.loads((world / "world.json").read_text())["things"]
    files = [(i, f) for i, name in enumerate(things) for f in sorted((world / "classify" / "val" / name).glob("*.png"))]
    pictures = torch.stack([photo_tensor(Image.open(f).convert("RGB"), clip.size[0]) for _, f in files])
    scores = clip.score(pictures, [f"a photo of a {name}." for name in things])
    truth = torch.tensor([i for i, _ in files])
    return {"top1": float((scores.argmax(1) == truth).float().mean()), "images": len(files), "classes": len(things)}


if __name__ == "__main__":
    sys.exit(main())
