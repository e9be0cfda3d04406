"""From a ``DataSpec`` to the reader that yields ``Sample``s with the fields a consumer needs.

Each format registers what it provides; a world folder offers several (its CSV for captions, its
COCO files for boxes, its label PNGs for semantic maps, its ImageFolder for image labels) and the
first that has every needed field is opened. Data that lacks a field fails here, in one line.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from ..errors import DataError
from .formats.folders import ImageFolderDataset, SemSegFolder
from .formats.imagetext import ImageTextDataset
from .formats.coco import CocoPanopticRegions, CocoRegions
from .formats.modelnet import DEFAULT_POINTS, ModelNetPoints
from .formats.nyudepth import DepthFolder
from .formats.lvis import LvisRegions
from .formats.audio import SoundTriplets, open_esc50, open_urbansound
from .formats.video import KineticsClips, MsrvttClips
from .formats.video_shards import FrameShards
from .formats.grounding import Flickr30kEntities, ModulatedCoco
from .formats.vqa import VQAv2
from .sample import describe_fields
from .skips import SkipCounter
from .spec import DataSpec, parse_data
from .world.folder import World, open_world

Opener = Callable[..., object]   # (spec, split, needs, skips, **stream_args) -> reader


@dataclass(frozen=True)
class ReaderKind:
    """A format's reader: the Sample fields it fills and how to open it (spec, split, needs, skips)."""

    fields: frozenset[str]
    open: Opener
    streaming: bool = False   # image-text streams (CSV, shards) vs map-style readers with len/getitem
    images: bool = True       # its samples carry an image (False: point clouds, sounds; ``Sample.image`` is None)


#: the need a consumer names (beside Sample ``FIELDS``) when it reads ``Sample.image``: only readers with
#: ``images`` fill it (a ModelNet or ESC-50 reader has an ``image_label`` but no image to classify)
IMAGE = "image"


def _open_imagetext(spec: DataSpec, split: str, needs: frozenset, skips: SkipCounter,
                    **stream_args: object) -> ImageTextDataset:
    """``stream_args``: ImageTextDataset's shuffle / seed / rank / world_size / chunk_size."""
    keys = {f"csv_{k}": spec.get(k) for k in ("img_key", "caption_key") if spec.get(k)}
    return ImageTextDataset(spec.get("path"), split, format=spec.format, skip_counter=skips, **keys,
                            **stream_args)


def _open_coco(spec: DataSpec, split: str, needs: frozenset, skips: SkipCounter, **_: object) -> CocoRegions:
    return CocoRegions(spec.get("images"), spec.get("annotations"), spec.get("stuff") or None,
                       with_masks="masks" in needs, skip_counter=skips)


def _open_panoptic(spec: DataSpec, split: str, needs: frozenset, skips: SkipCounter, **_: object) -> CocoPanopticRegions:
    return CocoPanopticRegions(spec.get("images"), spec.get("annotations"), spec.get("masks"), skip_counter=skips)


def _open_semseg(spec: DataSpec, split: str, needs: frozenset, skips: SkipCounter, **_: object) -> SemSegFolder:
    return SemSegFolder(spec.get("images"), spec.get("labels"), spec.get("classes"),
                        ignore_index=int(spec.get("ignore_index", 255)),
                        reduce_zero_label=bool(spec.get("reduce_zero_label", False)), skip_counter=skips)


def _open_imagefolder(spec: DataSpec, split: str, needs: frozenset, skips: SkipCounter, **_: object) -> ImageFolderDataset:
    return ImageFolderDataset(spec.get("root"), skip_counter=skips)


def _open_modelnet(spec: DataSpec, split: str, needs: frozenset, skips: SkipCounter, **_: object) -> ModelNetPoints:
    return ModelNetPoints(spec.get("root"), split, int(spec.get("num_points", DEFAULT_POINTS)), skip_counter=skips)


def _folds(spec: DataSpec) -> list[int] | None:
    folds = spec.get("folds")
    if folds in (None, ""):
        return None
    parts = [str(f) for f in folds] if isinstance(folds, (list, tuple)) else str(folds).replace("+", " ").split()
    if not parts or not all(p.isdigit() for p in parts):
        raise DataError(f"--data {spec}: folds={folds!r}; expected fold numbers joined by +, e.g. folds=1+2")
    return [int(p) for p in parts]


def _open_esc50(spec: DataSpec, split: str, needs: frozenset, skips: SkipCounter, **_: object) -> object:
    return open_esc50(spec.get("root"), _folds(spec), skip_counter=skips)


def _open_urbansound(spec: DataSpec, split: str, needs: frozenset, skips: SkipCounter, **_: object) -> object:
    return open_urbansound(spec.get("root"), _folds(spec), skip_counter=skips)


def _open_audiotext(spec: DataSpec, split: str, needs: frozenset, skips: SkipCounter, **_: object) -> object:
    return SoundTriplets(spec.get("path"), skip_counter=skips)


def _sampling(spec: DataSpec) -> object:
    """Frame sampling from a video spec's ``frames`` / ``sampling`` / ``fps`` keys (bad values: one line)."""
    from .video import FrameSampling
    try:
        return FrameSampling(int(spec.get("frames", 8)), str(spec.get("sampling", "uniform")),
                             float(spec.get("fps", 1.0)))
    except (TypeError, ValueError) as exc:
        raise DataError(f"--data {spec}: frames must be an integer and fps a number") from exc


def _open_msrvtt(spec: DataSpec, split: str, needs: frozenset, skips: SkipCounter, **_: object) -> MsrvttClips:
    return MsrvttClips(spec.get("root"), split, spec.get("test") or None, _sampling(spec), skip_counter=skips)


def _open_kinetics(spec: DataSpec, split: str, needs: frozenset, skips: SkipCounter, **_: object) -> KineticsClips:
    return KineticsClips(spec.get("root"), split, _sampling(spec), skip_counter=skips)


def _open_frame_shards(spec: DataSpec, split: str, needs: frozenset, skips: SkipCounter,
                       **_: object) -> FrameShards:
    return FrameShards(spec.get("path"), _sampling(spec), skip_counter=skips)


def _open_lvis(spec: DataSpec, split: str, needs: frozenset, skips: SkipCounter, **_: object) -> LvisRegions:
    return LvisRegions(spec.get("images"), spec.get("annotations"), with_masks="masks" in needs,
                       skip_counter=skips)


def _open_depth(spec: DataSpec, split: str, needs: frozenset, skips: SkipCounter, **_: object) -> DepthFolder:
    return DepthFolder(spec.get("images"), spec.get("depths"), skip_counter=skips)


def _open_modulated(spec: DataSpec, split: str, needs: frozenset, skips: SkipCounter, **_: object) -> ModulatedCoco:
    return ModulatedCoco(spec.get("images"), spec.get("annotations"), skip_counter=skips, with_masks="masks" in needs)


def _open_flickr(spec: DataSpec, split: str, needs: frozenset, skips: SkipCounter, **_: object) -> Flickr30kEntities:
    return Flickr30kEntities(spec.get("root"), spec.get("images"), spec.get("ids") or None, skip_counter=skips)


def _open_vqa(spec: DataSpec, split: str, needs: frozenset, skips: SkipCounter, **_: object) -> VQAv2:
    return VQAv2(spec.get("images"), spec.get("questions"), spec.get("annotations"), spec.get("instances") or None,
                 skip_counter=skips)


READERS: dict[str, ReaderKind] = {
    "csv": ReaderKind(frozenset({"caption"}), _open_imagetext, streaming=True),
    "wds": ReaderKind(frozenset({"caption"}), _open_imagetext, streaming=True),
    "coco": ReaderKind(frozenset({"boxes", "labels", "masks"}), _open_coco),
    "coco-panoptic": ReaderKind(frozenset({"boxes", "labels", "masks"}), _open_panoptic),
    "lvis": ReaderKind(frozenset({"boxes", "labels", "masks", "federated"}), _open_lvis),
    "semseg": ReaderKind(frozenset({"semantic"}), _open_semseg),
    "imagefolder": ReaderKind(frozenset({"image_label"}), _open_imagefolder),
    "modelnet": ReaderKind(frozenset({"points", "image_label"}), _open_modelnet, images=False),
    "nyu-depth": ReaderKind(frozenset({"depth"}), _open_depth),
    "esc50": ReaderKind(frozenset({"audio", "image_label"}), _open_esc50, images=False),
    "urbansound8k": ReaderKind(frozenset({"audio", "image_label"}), _open_urbansound, images=False),
    "audiotext": ReaderKind(frozenset({"caption", "audio"}), _open_audiotext),
    "msrvtt": ReaderKind(frozenset({"caption", "frames"}), _open_msrvtt, images=False),
    "kinetics": ReaderKind(frozenset({"frames", "image_label"}), _open_kinetics, images=False),
    "wds-video": ReaderKind(frozenset({"caption", "frames"}), _open_frame_shards, images=False),
    "modulated-coco": ReaderKind(frozenset({"caption", "boxes", "phrases", "masks"}), _open_modulated),
    "flickr30k": ReaderKind(frozenset({"caption", "boxes", "phrases"}), _open_flickr),
    "vqa": ReaderKind(frozenset({"question"}), _open_vqa),
}


def world_parts(spec: DataSpec, split: str, world: World | None = None) -> list[DataSpec]:
    """The formats inside a world's split, as specs, in the order they are preferred."""
    world = world or open_world(spec.get("root"))
    s = world.split(split)
    stuff = {"stuff": str(s.stuff)} if s.stuff.is_file() else {}
    return [DataSpec("csv", {"path": str(s.csv)}, str(spec)),
            DataSpec("coco", {"images": str(s.image_dir), "annotations": str(s.instances), **stuff}, str(spec)),
            DataSpec("semseg", {"images": str(s.image_dir), "labels": str(s.semseg_dir),
                                "classes": str(world.classes_file), "ignore_index": world.ignore_index}, str(spec)),
            DataSpec("imagefolder", {"root": str(s.classify_dir)}, str(spec))] + \
        ([DataSpec("audiotext", {"path": str(sounds)}, str(spec))]
         if (sounds := world.root / "audio" / f"{split}.csv").is_file() else []) + \
        ([DataSpec("modulated-coco", {"images": str(s.image_dir), "annotations": str(grounding)}, str(spec))]
         if (grounding := world.root / "grounding" / f"mdetr_{split}.json").is_file() else []) + \
        _world_vqa(spec, world, split)


def _world_vqa(spec: DataSpec, world: World, split: str) -> list[DataSpec]:
    """The world's VQAv2 files of ``split`` as a spec (``data synth --vqa``), image ids named by its instances."""
    from .world.vqa import vqa_files

    questions, annotations = vqa_files(world.root, split)
    if not questions.is_file():
        return []
    s = world.split(split)
    return [DataSpec("vqa", {"images": str(s.image_dir), "questions": str(questions),
                             "annotations": str(annotations), "instances": str(s.instances)}, str(spec))]


def provided_fields(spec: DataSpec | str) -> frozenset[str]:
    """Every field some reader of ``spec`` can fill."""
    spec = parse_data(spec)
    if spec.format == "world":
        return frozenset().union(*(READERS[p.format].fields for p in world_parts(spec, "train")))
    return READERS[spec.format].fields


def provides(kind: ReaderKind, needs: frozenset[str]) -> bool:
    """Whether a reader of ``kind`` fills ``needs`` (Sample fields, and ``IMAGE`` for the image itself)."""
    return needs - {IMAGE} <= kind.fields and (IMAGE not in needs or kind.images)


def has_images(spec: DataSpec | str) -> bool:
    """Whether some reader of ``spec`` yields images."""
    spec = parse_data(spec)
    parts = world_parts(spec, "train") if spec.format == "world" else [spec]
    return any(READERS[p.format].images for p in parts)


def _choose(spec: DataSpec, candidates: list[DataSpec], needs: frozenset[str], who: str) -> DataSpec:
    """The first candidate spec that provides ``needs``; DataError names what is missing."""
    for candidate in candidates:
        if provides(READERS[candidate.format], needs):
            return candidate
    has = frozenset().union(*(READERS[c.format].fields for c in candidates))
    if IMAGE in needs and not any(READERS[c.format].images for c in candidates):
        raise DataError(f"{who} needs images; --data {spec} has {describe_fields(has)} and no images")
    needs = needs - {IMAGE}
    missing = describe_fields(needs - has) if needs - has else describe_fields(needs) + " together"
    raise DataError(f"{who} needs {missing}; --data {spec} has {describe_fields(has)}")


def resolve_reader(spec: DataSpec | str, needs: Iterable[str] = (), split: str = "train",
                   who: str = "this task") -> DataSpec:
    """The concrete (non-world) spec that provides ``needs``; DataError names what is missing."""
    spec = parse_data(spec)
    candidates = world_parts(spec, split) if spec.format == "world" else [spec]
    return _choose(spec, candidates, frozenset(needs), who)


@dataclass(frozen=True)
class DataInfo:
    """What opened data says about itself, so that an objective is built in one go after the data is open.

    Args:
        spec: the parsed ``--data``.
        classes: the reader's class names in label order (None: the data names no classes).
        isthing: thing (True) or stuff (False) per class (None: the format does not say; all things).
        novel: classes the data itself holds out of training (a world's novel things, LVIS's rare classes).
        answers: the answers of question data, most frequent first (None: the data has no questions).
    """

    spec: DataSpec | None = None
    classes: tuple[str, ...] | None = None
    isthing: tuple[bool, ...] | None = None
    novel: tuple[str, ...] = ()
    answers: tuple[str, ...] | None = None

    def thing_flags(self) -> list[bool]:
        """isthing per class, every class a thing when the format does not say."""
        if self.classes is None:
            return []
        return list(self.isthing) if self.isthing is not None else [True] * len(self.classes)


def _describe(spec: DataSpec, reader: object, world: World | None) -> DataInfo:
    classes = getattr(reader, "classes", None)
    isthing = getattr(reader, "isthing", None)
    answers = getattr(reader, "answers", None)
    return DataInfo(spec, None if classes is None else tuple(str(c) for c in classes),
                    None if isthing is None else tuple(bool(t) for t in isthing),
                    tuple(world.novel_things) if world is not None else tuple(getattr(reader, "held_out", ())),
                    None if answers is None else tuple(str(a) for a in answers))


def open_data(spec: DataSpec | str, needs: Iterable[str] = (), split: str = "train",
              skip_counter: SkipCounter | None = None, who: str = "this task",
              **stream_args: object) -> tuple[object, ReaderKind, DataInfo]:
    """Open the reader of ``spec`` that fills ``needs`` (for a world: of ``split``), with what it says of itself.

    The spec is parsed and a world folder read once. ``stream_args`` go to streaming (image-text) readers only:
    shuffle, seed, rank, world_size, chunk_size.
    """
    spec, needs = parse_data(spec), frozenset(needs)
    world = open_world(spec.get("root")) if spec.format == "world" else None
    candidates = world_parts(spec, split, world) if world is not None else [spec]
    concrete = _choose(spec, candidates, needs, who)
    kind = READERS[concrete.format]
    reader = kind.open(concrete, split, needs, skip_counter or SkipCounter(), **stream_args)
    return reader, kind, _describe(spec, reader, world)


def open_reader(spec: DataSpec | str, needs: Iterable[str] = (), split: str = "train",
                skip_counter: SkipCounter | None = None, who: str = "this task",
                **stream_args: object) -> tuple[object, ReaderKind]:
    """``open_data`` without the ``DataInfo`` (evaluation and tools that only read)."""
    reader, kind, _ = open_data(spec, needs, split, skip_counter, who, **stream_args)
    return reader, kind
