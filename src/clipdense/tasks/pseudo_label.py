"""GLIP's self-training: a trained GLIP head (the teacher) boxes the noun phrases of a caption-only corpus, and the
boxes it is sure of become grounding data a student trains on beside the gold data.

    report = cd.pseudo_label(bundle, head, "captions.csv", "runs/pseudo/pseudo.json", min_score=0.5,
                             gold="WORLD")
    # clipdense train --objective glip --data runs/pseudo/pseudo.yaml ...

The corpus is an open_clip CSV (``filepath,title``) or WebDataset shards (``.tar``: image + ``.txt`` caption).
The phrases are each caption's noun phrases (``data.phrases.noun_phrase_spans``, as ``cd.ground`` picks them); a
phrase keeps its boxes scoring at least ``min_score`` (at most ``top``), and an image with no kept box is left
out. The output is modulated-COCO JSON (GLIP / MDETR) with absolute image paths (shard images are written as PNG
into ``<stem>-images/`` beside it), written atomically, plus ``<stem>.yaml``: the data file that
``train --data`` reads. ``gold`` (grounding data: a world written with ``--grounding``, modulated COCO) is copied
in first, so the YAML is gold + pseudo-labels.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
import torchvision.transforms.functional as TF
from PIL import Image

from ..config import atomic_save_picture, atomic_write_bytes
from ..data.formats.grounding import GroundedImage, ModulatedCoco, write_modulated_coco
from ..data.formats.imagetext import ImageTextDataset, read_csv
from ..data.images import open_image
from ..data.phrases import noun_phrase_spans
from ..data.readers import open_data
from ..data.spec import parse_data
from ..data.world.folder import open_world
from ..errors import DataError, ImageLoadError
from ..heads.grounding import GLIPHead
from .ground import as_grounder

#: a corpus item: (image path or None for an in-memory shard image, the image, its caption, its key)
Item = tuple[str | None, Image.Image, str, str]


@dataclass
class PseudoLabels:
    """What ``pseudo_label`` wrote: the JSON and data YAML, images read, labelled (with a kept box), skipped
    for want of a noun phrase or a sure box, boxes written, gold images copied in, unreadable images named."""

    annotations: Path
    data: Path
    read: int = 0
    labelled: int = 0
    no_phrase: int = 0
    unsure: int = 0
    boxes: int = 0
    gold: int = 0
    notes: list[str] = field(default_factory=list)


def parse_as(flag: str, data: str | os.PathLike) -> Any:
    """``parse_data`` whose one-line refusal names ``flag`` instead of ``--data``."""
    try:
        return parse_data(data)
    except DataError as exc:
        text = str(exc)
        raise DataError(flag + text[len("--data"):] if text.startswith("--data") else text) from None


def corpus_items(corpus: str | os.PathLike, skipped: list[str]) -> Iterator[Item]:
    """The corpus's (path or None, image, caption, key) in file order; unreadable images are named in
    ``skipped``. A world folder means its train CSV."""
    spec = parse_as("--pseudo-label", corpus)
    if spec.format == "world":
        spec = parse_data(str(open_world(spec.get("root")).split("train").csv))
    if spec.format == "csv":
        for path, caption in read_csv(Path(spec.get("path"))):
            try:
                image = open_image(path)
            except ImageLoadError as exc:
                skipped.append(str(exc))
                continue
            yield str(Path(path).resolve()), image, caption, Path(path).stem
        return
    if spec.format != "wds":
        raise DataError(f"--pseudo-label {corpus}: expected a caption corpus (an open_clip CSV or WebDataset "
                        f".tar shards), got {spec.format} data")
    for sample in ImageTextDataset(spec.get("path"), shuffle=False):
        image, key = sample["image"], str(sample["key"]).replace(os.sep, "_")
        yield None, image, sample["caption"] or "", key


def gold_records(gold: str | os.PathLike) -> list[GroundedImage]:
    """The gold grounding data's records with absolute image paths (a world's or a modulated-COCO file)."""
    reader, _, _ = open_data(parse_as("--gold", gold), {"boxes", "phrases"}, who="--gold")
    if not isinstance(reader, ModulatedCoco):
        raise DataError(f"--gold {gold}: expected modulated-COCO grounding data (a world written with "
                        "--grounding or modulated-coco:images=DIR,annotations=FILE)")
    return [GroundedImage(str((reader.image_dir / r.file_name).resolve()), r.width, r.height, r.caption, r.spans,
                          r.boxes) for r in reader.records]


def _kept(found: dict[str, torch.Tensor], phrases: int, min_score: float, top: int) -> list[list[list[float]]]:
    """Per phrase, its boxes scoring at least ``min_score`` (best first, at most ``top``)."""
    out = []
    for index in range(phrases):
        mine = (found["labels"] == index) & (found["scores"] >= min_score)
        order = found["scores"][mine].argsort(descending=True)[:top]
        out.append([[round(float(v), 2) for v in box] for box in found["boxes"][mine][order].tolist()])
    return out


def _label_batch(head: GLIPHead, batch: Sequence[Item], min_score: float, top: int, report: PseudoLabels,
                 images_out: Path) -> list[GroundedImage]:
    """Ground one batch's noun phrases; the records of images with at least one sure box."""
    usable = [(item, noun_phrase_spans(item[2])) for item in batch]
    report.no_phrase += sum(1 for _, spans in usable if not spans)
    usable = [(item, spans) for item, spans in usable if spans]
    if not usable:
        return []
    device = head.log_scale.device
    found = head.ground([TF.to_tensor(item[1]).to(device) for item, _ in usable], [item[2] for item, _ in usable],
                        [[(s,) for s in spans] for _, spans in usable])
    records = []
    for (item, spans), result in zip(usable, found):
        path, image, caption, key = item
        boxes = _kept({k: v.cpu() for k, v in result.items()}, len(spans), min_score, top)
        kept = [(span, b) for span, b in zip(spans, boxes) if b]
        if not kept:
            report.unsure += 1
            continue
        if path is None:
            path = str(atomic_save_picture(image, images_out / f"{key}.png").resolve())
        records.append(GroundedImage(path, image.width, image.height, caption, [[span] for span, _ in kept],
                                     [b for _, b in kept]))
        report.boxes += sum(len(b) for _, b in kept)
    return records


def _data_yaml(annotations: Path) -> Path:
    """``<stem>.yaml`` beside the JSON: the data file ``train --data`` reads (image paths in it are absolute)."""
    path = annotations.with_suffix(".yaml")
    text = f"format: modulated-coco\nimages: .\nannotations: {annotations.name}\n"
    atomic_write_bytes(path, text.encode())
    return path


@torch.no_grad()
def pseudo_label(bundle: Any, head: GLIPHead | str | os.PathLike, corpus: str | os.PathLike,
                 out: str | os.PathLike, min_score: float = 0.5, top: int = 3, gold: str | None = None,
                 limit: int | None = None, batch_size: int = 8,
                 progress: Callable[[int], None] | None = None) -> PseudoLabels:
    """Box the noun phrases of ``corpus``'s captions with the teacher ``head``; write modulated-COCO JSON.

    Args:
        bundle: the backbone the head was trained on.
        head: the teacher (a GLIP head or its file / run dir).
        corpus: captions with images: an open_clip CSV or WebDataset shards.
        out: the JSON to write (``<stem>.yaml`` and, for shards, ``<stem>-images/`` beside it).
        min_score / top: a phrase's boxes kept (GLIP keeps only confident teacher boxes).
        gold: grounding data copied in first (the student trains on gold + pseudo-labels).
        limit: read at most this many corpus images.
        batch_size: images per teacher forward.
        progress: called with the count of images read after each batch.
    """
    teacher = as_grounder(head, bundle)
    out = Path(out)
    images_out = out.parent / f"{out.stem}-images"
    records = gold_records(gold) if gold else []
    report = PseudoLabels(out, out.with_suffix(".yaml"), gold=len(records))
    batch: list[Item] = []
    for item in corpus_items(corpus, report.notes):
        if limit is not None and report.read >= limit:
            break
        batch.append(item)
        report.read += 1
        if len(batch) == batch_size:
            records += _label_batch(teacher, batch, min_score, top, report, images_out)
            batch = []
            if progress:
                progress(report.read)
    records += _label_batch(teacher, batch, min_score, top, report, images_out)
    report.labelled = len(records) - report.gold
    if report.read == 0:
        raise DataError(f"--pseudo-label {corpus}: no image with a caption was read")
    write_modulated_coco(out, records, info=f"clipdense pseudo-labels (min_score {min_score}, top {top}) of "
                                            f"{corpus}" + (f" beside gold {gold}" if gold else ""))
    report.data = _data_yaml(out)
    return report


__all__ = ["PseudoLabels", "corpus_items", "gold_records", "pseudo_label"]
