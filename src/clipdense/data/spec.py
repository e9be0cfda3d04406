"""What ``--data`` names: one parser for training and evaluation, from a path, a ``format:key=value`` string
or a small YAML file.

Accepted forms:
- ``WORLD`` (a folder written by ``clipdense data synth``), ``file.csv``/``.tsv`` (open_clip CSV),
  ``shard.tar`` / ``'shards-{000..009}.tar'`` / a folder of ``.tar`` shards (WebDataset);
- ``coco:images=DIR,annotations=instances.json[,stuff=stuff.json]`` (COCO instances, optional COCO-Stuff);
- ``coco-panoptic:images=DIR,annotations=panoptic.json,masks=PNG_DIR``;
- ``wds-video:path=DIR|'shards-{000..009}.tar'[,frames=8]`` (WebDataset shards of decoded frames);
- ``lvis:images=DIR,annotations=lvis_v1_val.json`` (LVIS v1; DIR holds train2017/ and val2017/);
- ``semseg:images=DIR,labels=DIR,classes=names.txt[,ignore_index=255,reduce_zero_label=true]``
  (the ADE20K / VOC / Context layout);
- ``imagefolder:root=DIR`` (root/<class name>/<image>);
- ``modelnet:root=DIR[,num_points=1024]`` (ModelNet40's meshes or ``modelnet40_normal_resampled``);
- ``nyu-depth:images=DIR,depths=DIR`` (16-bit millimetre depth PNGs named as the images);
- ``modulated-coco:images=DIR,annotations=FILE`` (GLIP / MDETR grounding JSON: captions, boxes, phrase spans);
- ``flickr30k:root=DIR,images=DIR[,ids=FILE]`` (Flickr30k Entities: root/Sentences, root/Annotations);
- ``vqa:images=DIR,questions=FILE,annotations=FILE[,instances=FILE]`` (VQAv2 question + annotation JSON, one sample
  per question; ``instances``: a COCO JSON naming each image id's file);
- ``data.yaml`` holding the same keys plus ``format:`` (paths relative to the YAML's folder).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from ..errors import DataError

#: format -> (required keys, optional keys); the path-valued keys are resolved relative to a YAML file.
FORMATS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "world": (("root",), ()),
    "csv": (("path",), ("img_key", "caption_key")),
    "wds": (("path",), ()),
    "coco": (("images", "annotations"), ("stuff",)),
    "coco-panoptic": (("images", "annotations", "masks"), ()),
    "lvis": (("images", "annotations"), ()),
    "semseg": (("images", "labels", "classes"), ("ignore_index", "reduce_zero_label")),
    "imagefolder": (("root",), ()),
    "modelnet": (("root",), ("num_points",)),
    "nyu-depth": (("images", "depths"), ()),
    "esc50": (("root",), ("folds",)),
    "urbansound8k": (("root",), ("folds",)),
    "audiotext": (("path",), ()),
    "msrvtt": (("root",), ("test", "frames", "sampling", "fps")),
    "kinetics": (("root",), ("frames", "sampling", "fps")),
    "wds-video": (("path",), ("frames", "sampling", "fps")),
    "modulated-coco": (("images", "annotations"), ()),
    "flickr30k": (("root", "images"), ("ids",)),
    "vqa": (("images", "questions", "annotations"), ("instances",)),
}
PATH_KEYS = ("root", "path", "images", "annotations", "stuff", "masks", "labels", "classes", "depths", "ids", "questions",
             "instances")


@dataclass(frozen=True)
class DataSpec:
    """A parsed ``--data``: its format and the format's keys (paths as strings)."""

    format: str
    options: Mapping[str, Any] = field(default_factory=dict)
    text: str = ""   # what the user wrote, for messages

    def get(self, key: str, default: Any = None) -> Any:
        return self.options.get(key, default)

    def __str__(self) -> str:
        return self.text or f"{self.format}:" + ",".join(f"{k}={v}" for k, v in self.options.items())


def _check(fmt: str, options: dict[str, Any], text: str) -> DataSpec:
    if fmt not in FORMATS:
        raise DataError(f"--data {text}: unknown format {fmt!r}; expected one of {sorted(FORMATS)}")
    required, optional = FORMATS[fmt]
    missing = [k for k in required if not options.get(k)]
    unknown = sorted(set(options) - set(required) - set(optional))
    if missing or unknown:
        what = f"missing {missing}" if missing else f"unknown key(s) {unknown}"
        raise DataError(f"--data {text}: {fmt} {what}; expected {fmt}:" +
                        ",".join(f"{k}=..." for k in required) + (f" (optional: {', '.join(optional)})"
                                                                 if optional else ""))
    return DataSpec(fmt, dict(options), text)


def _parse_pairs(fmt: str, rest: str, text: str) -> DataSpec:
    options: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, value = part.partition("=")
        if not sep:
            if len(FORMATS.get(fmt, ((),))[0]) == 1 and not options:   # imagefolder:DIR
                key, value = FORMATS[fmt][0][0], part
            else:
                raise DataError(f"--data {text}: expected key=value pairs after '{fmt}:', got {part!r}")
        options[key.strip()] = yaml.safe_load(value) if key.strip() not in PATH_KEYS else value.strip()
    return _check(fmt, options, text)


def _parse_yaml(path: Path) -> DataSpec:
    try:
        loaded = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise DataError(f"--data {path}: not a readable YAML data description ({exc.__class__.__name__})") from exc
    if not isinstance(loaded, dict) or "format" not in loaded:
        raise DataError(f"--data {path}: expected a mapping with 'format:' and the format's keys")
    options = {k: v for k, v in loaded.items() if k != "format"}
    for key in PATH_KEYS:
        if key in options and not os.path.isabs(str(options[key])):
            options[key] = str(path.parent / str(options[key]))
    return _check(str(loaded["format"]), options, str(path))


def parse_data(data: str | os.PathLike | DataSpec) -> DataSpec:
    """``--data`` as a DataSpec (see the module docstring for the accepted forms)."""
    if isinstance(data, DataSpec):
        return data
    text = str(data)
    if not text:
        raise DataError("--data is required: a world folder, a CSV, shards, or format:key=value (see --help)")
    head, sep, rest = text.partition(":")
    if sep and head in FORMATS and not Path(text).exists():
        return _parse_pairs(head, rest, text)
    if any(c in text for c in "{*?["):
        return DataSpec("wds", {"path": text}, text)
    path = Path(text)
    if not path.exists():
        raise DataError(f"--data {text}: no such file or folder (expected a world folder, a CSV, tar shards, "
                        f"a data YAML, or one of {sorted(set(FORMATS) - {'world', 'csv', 'wds'})} as "
                        "format:key=value)")
    if path.is_dir():
        if (path / "world.json").is_file():
            return DataSpec("world", {"root": text}, text)
        if any(path.glob("*.tar")):
            return DataSpec("wds", {"path": text}, text)
        if any(path.glob("*.csv")) or any(path.glob("*.tsv")):
            return DataSpec("csv", {"path": str(sorted([*path.glob("*.csv"), *path.glob("*.tsv")])[0])}, text)
        what = "an empty folder" if not any(path.iterdir()) else "a folder without world.json, *.tar or *.csv"
        raise DataError(f"--data {text}: {what}; for other layouts use coco:..., semseg:... or imagefolder:root=DIR")
    if path.suffix in (".yaml", ".yml"):
        return _parse_yaml(path)
    if path.suffix == ".tar":
        return DataSpec("wds", {"path": text}, text)
    return DataSpec("csv", {"path": text}, text)

