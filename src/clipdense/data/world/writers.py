"""Write a synthetic world in the formats users already have (see docs/architecture.md).

Scenes are encoded (PNG bytes, RLE masks) in a worker pool and written by the main process,
so output is identical whatever the number of workers.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil
import tarfile
import time
from dataclasses import dataclass
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from PIL import Image

from ...config import atomic_write_bytes, config_to_dict, save_config
from ...errors import ConfigError
from .scenes import Scene, SynthConfig, Vocabulary, generate_scene, generate_single, make_vocabulary

IGNORE_INDEX = 255
SPLITS = ("train", "val")
#: everything write_world puts in a world folder (what --overwrite removes first, and nothing else)
WORLD_PARTS = ("train", "val", "shards", "annotations", "semseg", "classify", "train.csv", "val.csv",
               "world.json", "README.md", "config.yaml", "audio", "lvis", "grounding", "vqa")


@dataclass
class WriteSummary:
    """What write_world produced, for the CLI's final line."""

    out: Path
    images: dict[str, int]
    classify_images: dict[str, int]
    objects: dict[str, int]
    seconds: float

    @property
    def images_per_second(self) -> float:
        total = sum(self.images.values()) + sum(self.classify_images.values())
        return total / max(self.seconds, 1e-9)


def png_bytes(array: np.ndarray) -> bytes:
    """PNG-encode an (H, W) or (H, W, 3) uint8 array (fast compression: worlds are rewritten often)."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def mask_rle(mask: np.ndarray) -> tuple[dict[str, Any], list[float], int]:
    """A mask as (COCO RLE with its counts as text, its bbox x, y, w, h, its area): what instances files hold."""
    from pycocotools import mask as mask_utils
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    bbox = [float(v) for v in mask_utils.toBbox(rle)]
    area = int(mask_utils.area(rle))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle, bbox, area


def _panoptic_png(segments: np.ndarray) -> bytes:
    """COCO panoptic encoding: segment id = R + 256 G + 256^2 B."""
    ids = segments.astype(np.uint32)
    rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536 % 256], axis=-1).astype(np.uint8)
    return png_bytes(rgb)


def _regions(scene: Scene, vocab: Vocabulary) -> list[tuple[np.ndarray, int, bool]]:
    """(visible mask, category id, isthing) of every thing, then every stuff region still visible."""
    regions = [(mask, vocab.things.index(t.class_name) + 1, True) for t, mask in zip(scene.things, scene.masks)]
    covered = np.any(np.stack(scene.masks), axis=0) if scene.masks else np.zeros(scene.stuff_map.shape, bool)
    for name in scene.stuff:
        mask = (scene.stuff_map == vocab.stuff.index(name)) & ~covered
        if mask.any():
            regions.append((mask, len(vocab.things) + vocab.stuff.index(name) + 1, False))
    return regions


def encode_scene(cfg: SynthConfig, vocab: Vocabulary, split: str, index: int) -> dict[str, Any]:
    """Everything written for one scene, as bytes and JSON-ready dicts (picklable, for the pool)."""
    scene = generate_scene(cfg, vocab, split, index)
    labels = np.full(scene.stuff_map.shape, IGNORE_INDEX, np.uint8)
    segments = np.zeros(scene.stuff_map.shape, np.uint32)
    things, stuff, segments_info = [], [], []
    for seg_id, (mask, category_id, isthing) in enumerate(_regions(scene, vocab), start=1):
        labels[mask] = category_id - 1
        segments[mask] = seg_id
        rle, bbox, area = mask_rle(mask)
        ann = {"category_id": category_id, "segmentation": rle, "bbox": bbox, "area": area, "iscrowd": 0}
        (things if isthing else stuff).append(ann)
        segments_info.append({"id": seg_id, "category_id": category_id, "iscrowd": 0, "bbox": bbox, "area": area})
    meta = {"caption": scene.caption, "stuff": scene.stuff,
            "objects": [{"class": vocab.classes[a["category_id"] - 1], "bbox": a["bbox"]} for a in things]}
    return {"key": f"{index:06d}", "caption": scene.caption, "image": png_bytes(scene.image),
            "labels": png_bytes(labels), "panoptic": _panoptic_png(segments), "things": things,
            "stuff": stuff, "segments_info": segments_info, "meta": meta}


def encode_single(cfg: SynthConfig, vocab: Vocabulary, split: str, class_name: str, index: int) -> bytes:
    """PNG bytes of one single-object image for the ImageFolder split."""
    return png_bytes(generate_single(cfg, vocab, split, class_name, index).image)


def _tar_add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    tar.addfile(info, io.BytesIO(data))


def _categories(vocab: Vocabulary) -> list[dict[str, Any]]:
    cats = [{"id": i + 1, "name": n, "supercategory": "thing", "isthing": 1} for i, n in enumerate(vocab.things)]
    offset = len(vocab.things) + 1
    return cats + [{"id": offset + i, "name": n, "supercategory": "stuff", "isthing": 0}
                   for i, n in enumerate(vocab.stuff)]


def _job(args: tuple) -> dict[str, Any]:
    return encode_scene(*args)


def _single_job(args: tuple) -> tuple[str, int, bytes]:
    return args[3], args[4], encode_single(*args)


Mapper = Callable[[Callable, list], Iterator[Any]]


def _in_process(fn: Callable, jobs: list) -> Iterator[Any]:
    return map(fn, jobs)


@contextlib.contextmanager
def _mapper(workers: int) -> Iterator[Mapper]:
    """Ordered map: in-process for workers <= 1 (tests, debugging), else one pool for the whole world.
    Fork where available: the workers only run numpy/PIL, and spawning would re-import torch in each."""
    if workers <= 1:
        yield _in_process
        return
    method = "fork" if "fork" in get_all_start_methods() else "spawn"
    with get_context(method).Pool(workers) as pool:
        yield lambda fn, jobs: pool.imap(fn, jobs, chunksize=16)


def _write_split(out: Path, cfg: SynthConfig, vocab: Vocabulary, split: str, count: int,
                 progress: Callable[[int], None], mapper: Mapper) -> int:
    """Images, CSV, shards, COCO instances/stuff/panoptic and semantic labels of one split."""
    for folder in (f"{split}/images", f"semseg/{split}", f"annotations/panoptic_{split}", "shards"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    images, instances, stuff, panoptic, rows = [], [], [], [], []
    tar: tarfile.TarFile | None = None
    jobs = [(cfg, vocab, split, i) for i in range(count)]
    for i, rec in enumerate(mapper(_job, jobs)):
        key, name = rec["key"], f"{rec['key']}.png"
        (out / split / "images" / name).write_bytes(rec["image"])
        (out / "semseg" / split / name).write_bytes(rec["labels"])
        (out / "annotations" / f"panoptic_{split}" / name).write_bytes(rec["panoptic"])
        if i % cfg.shard_size == 0:
            if tar is not None:
                tar.close()
            tar = tarfile.open(out / "shards" / f"{split}-{i // cfg.shard_size:06d}.tar", "w")
        _tar_add(tar, f"{key}.png", rec["image"])
        _tar_add(tar, f"{key}.txt", rec["caption"].encode())
        _tar_add(tar, f"{key}.json", json.dumps(rec["meta"]).encode())
        image_id = i + 1
        images.append({"id": image_id, "file_name": name, "width": cfg.image_size, "height": cfg.image_size})
        for target, anns in ((instances, rec["things"]), (stuff, rec["stuff"])):
            for ann in anns:
                target.append({**ann, "id": len(target) + 1, "image_id": image_id})
        panoptic.append({"image_id": image_id, "file_name": name, "segments_info": rec["segments_info"]})
        rows.append((f"{split}/images/{name}", rec["caption"]))
        progress(1)
    if tar is not None:
        tar.close()
    _write_json_files(out, split, vocab, images, instances, stuff, panoptic)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["filepath", "title"])
    writer.writerows(rows)
    atomic_write_bytes(out / f"{split}.csv", buffer.getvalue().encode())
    return len(instances)


def _write_json_files(out: Path, split: str, vocab: Vocabulary, images: list, instances: list, stuff: list,
                      panoptic: list) -> None:
    categories = _categories(vocab)
    info = {"description": f"clipdense synthetic world, {split} split"}
    docs = {f"instances_{split}.json": {"info": info, "images": images, "annotations": instances,
                                         "categories": categories},
            f"stuff_{split}.json": {"info": info, "images": images, "annotations": stuff, "categories": categories},
            f"panoptic_{split}.json": {"info": info, "images": images, "annotations": panoptic,
                                        "categories": categories}}
    for name, doc in docs.items():
        atomic_write_bytes(out / "annotations" / name, json.dumps(doc).encode())


def _write_classify(out: Path, cfg: SynthConfig, vocab: Vocabulary, split: str, per_class: int,
                    progress: Callable[[int], None], mapper: Mapper) -> int:
    jobs = [(cfg, vocab, split, name, j) for name in vocab.things for j in range(per_class)]
    for name, j, data in mapper(_single_job, jobs):
        folder = out / "classify" / split / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{j:04d}.png").write_bytes(data)
        progress(1)
    return len(jobs)


def total_images(cfg: SynthConfig) -> int:
    """How many images write_world will produce (for progress bars)."""
    things = len(make_vocabulary(cfg).things)
    return cfg.train + cfg.val + things * (cfg.classify_train_per_class + cfg.classify_val_per_class)


def check_world_folder(out: Path, overwrite: bool = False) -> bool:
    """Whether ``out`` holds a world to replace. A world goes into a new or empty folder, or replaces one with
    ``overwrite``; anything else is refused (ConfigError naming --out)."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: is a file, expected a folder for the world")
    if not out.is_dir() or not any(out.iterdir()):
        return False
    if not (out / "world.json").is_file():
        raise ConfigError(f"--out {out}: the folder is not empty and holds no world; choose a new or empty folder")
    if not overwrite:
        raise ConfigError(f"--out {out}: already holds a world; choose another --out, or pass --overwrite to "
                          "replace it")
    return True


def prepare_world_folder(out: Path, overwrite: bool = False) -> None:
    """``check_world_folder``, then remove the parts of the world being replaced, so no image of a bigger old
    world stays behind (files that are not a world's part are left alone)."""
    if not check_world_folder(out, overwrite):
        return
    for name in WORLD_PARTS:
        part = out / name
        if part.is_dir() and not part.is_symlink():
            shutil.rmtree(part)
        elif part.exists() or part.is_symlink():
            part.unlink()


def write_world(cfg: SynthConfig, progress: Callable[[int], None] | None = None,
                overwrite: bool = False) -> WriteSummary:
    """Generate and write the whole world under ``cfg.out``; returns counts and timing.

    ``cfg.out`` must be new or empty, or hold a world to replace with ``overwrite`` (``prepare_world_folder``).
    """
    vocab = make_vocabulary(cfg)
    out = Path(cfg.out)
    prepare_world_folder(out, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    step = progress or (lambda n: None)
    start = time.perf_counter()
    counts = {s: n for s, n in zip(SPLITS, (cfg.train, cfg.val))}
    per_class = {"train": cfg.classify_train_per_class, "val": cfg.classify_val_per_class}
    with _mapper(cfg.workers) as mapper:
        objects = {s: _write_split(out, cfg, vocab, s, counts[s], step, mapper) for s in SPLITS}
        classify = {s: _write_classify(out, cfg, vocab, s, per_class[s], step, mapper) for s in SPLITS}
    atomic_write_bytes(out / "semseg" / "classes.txt", ("\n".join(vocab.classes) + "\n").encode())
    meta = world_metadata(cfg, vocab, counts, classify, objects)
    atomic_write_bytes(out / "world.json", json.dumps(meta, indent=1).encode())
    atomic_write_bytes(out / "README.md", readme_text(cfg, vocab, counts, classify).encode())
    save_config(cfg, out / "config.yaml")
    return WriteSummary(out, counts, classify, objects, time.perf_counter() - start)


def world_metadata(cfg: SynthConfig, vocab: Vocabulary, counts: dict[str, int], classify: dict[str, int],
                   objects: dict[str, int]) -> dict[str, Any]:
    """The contents of world.json: classes, splits and where every format lives (relative paths)."""
    splits = {}
    for s in SPLITS:
        shards = max(1, -(-counts[s] // cfg.shard_size)) if counts[s] else 0
        splits[s] = {"images": counts[s], "objects": objects[s], "image_dir": f"{s}/images", "csv": f"{s}.csv",
                     "shards": f"shards/{s}-{{000000..{shards - 1:06d}}}.tar" if shards else None,
                     "num_shards": shards, "instances": f"annotations/instances_{s}.json",
                     "stuff": f"annotations/stuff_{s}.json", "panoptic": f"annotations/panoptic_{s}.json",
                     "panoptic_dir": f"annotations/panoptic_{s}", "semseg_dir": f"semseg/{s}",
                     "classify_dir": f"classify/{s}", "classify_images": classify[s]}
    return {"format": "clipdense-world", "version": 1, "seed": cfg.seed, "image_size": cfg.image_size,
            "things": vocab.things, "stuff": vocab.stuff, "classes": vocab.classes,
            "base_things": vocab.base_things, "novel_things": vocab.novel_things, "novel_words": vocab.novel_words,
            "colours": cfg.colours, "shapes": cfg.shapes, "composites": cfg.composites,
            "semseg": {"classes_file": "semseg/classes.txt", "ignore_index": IGNORE_INDEX, "background_index": None},
            "splits": splits, "config": config_to_dict(cfg)}


def readme_text(cfg: SynthConfig, vocab: Vocabulary, counts: dict[str, int], classify: dict[str, int]) -> str:
    """WORLD/README.md: what the splits are and how classes are numbered."""
    return f"""# clipdense synthetic world (seed {cfg.seed}, {cfg.image_size}x{cfg.image_size} px)

Generated by `clipdense data synth`; `config.yaml` regenerates it byte for byte.

| split | scenes | single-object images (classify/) |
|---|---|---|
| train | {counts['train']} | {classify['train']} |
| val | {counts['val']} | {classify['val']} |

- Things ({len(vocab.things)}): "<colour> <shape>" for {len(cfg.colours)} colours x {len(cfg.shapes)} shapes,
  plus composites made of parts or two colours: {', '.join(cfg.composites) or 'none'}.
- Stuff ({len(vocab.stuff)}): {', '.join(vocab.stuff)}. Some scenes have two stuff regions (top/bottom).
- Base vs novel: {len(vocab.novel_things)} colour-shape combos are novel ({', '.join(vocab.novel_things)}).
  They never appear in train scenes (images, captions, COCO, semseg); val scenes contain every thing.
  Novel words ({', '.join(vocab.novel_words) or 'none'}) appear only in val captions. The classify/ split
  has every thing in both train and val: filter with `base_things` for base-to-novel protocols.
- Open-vocabulary detection (the OV-COCO structure): base categories = `base_things` (every composite and the
  colour-shape combos not listed above), novel categories = `novel_things`. Novel boxes never appear in
  annotations/instances_train.json (the scenes never show them), so a detector trained on train (`clipdense train
  --objective fvit --data WORLD`) learns base classes only; instances_val.json annotates both, and `clipdense eval
  --tasks detection --head HEAD` reports AP50 on novel, base and all thing categories (stuff is not detected).
- Class numbering: `classes` in world.json = things then stuff. Semantic label value i = line i of
  semseg/classes.txt = COCO category id i + 1. Every pixel is a thing or stuff, so there is no
  background class; 255 means ignore (unused here, honoured by the readers).
- COCO: annotations/instances_*.json (things, RLE masks), stuff_*.json (stuff regions, same categories,
  `isthing` 0) and panoptic_*.json + panoptic_*/ PNGs (id = R + 256 G + 256^2 B).
- Image-text: train.csv / val.csv (`filepath,title`, paths relative to this folder) and
  shards/{{train,val}}-NNNNNN.tar ({cfg.shard_size} samples each: .png, .txt caption, .json objects).
"""
