"""Issue 32: property-based tests (Hypothesis) over every reader and the geometry transforms.

Generated annotation files (valid, degenerate, out of range, truncated, wrong types) and images of generated sizes
(1x1 ... 1x4000) give a ``Sample`` that keeps the invariants (boxes inside the image, labels within the class list,
masks and maps the image's size), a counted skip (``ImageLoadError``), or a one-line ``DataError`` at open; never
another exception. The example count and seed come from the ``clipdense`` profile in conftest.py (fixed, bounded);
``CLIPDENSE_HYPOTHESIS_PROFILE=thorough`` runs more.
"""
from __future__ import annotations

import io
import json
from collections import Counter, defaultdict
import math
import shutil
import tempfile
import wave
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch
from PIL import Image

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings, strategies as st  # noqa: E402

from clipdense.data.formats.coco import CocoPanopticRegions  # noqa: E402
from clipdense.data.formats.folders import ImageFolderDataset, SemSegFolder  # noqa: E402
from clipdense.data.formats.imagetext import ImageTextDataset  # noqa: E402
from clipdense.data.formats.modelnet import ModelNetPoints  # noqa: E402
from clipdense.data.formats.nyudepth import DepthFolder  # noqa: E402
from clipdense.data.images import open_image  # noqa: E402
from clipdense.data.readers import READERS  # noqa: E402
from clipdense.data.sample import Sample  # noqa: E402
from clipdense.data.skips import SkipCounter  # noqa: E402
from clipdense.data.spec import DataSpec  # noqa: E402
from clipdense.data.transforms import Letterbox, RandomHFlip, RandomResizedCrop, ScaleJitter, crop  # noqa: E402
from clipdense.errors import DataError, ImageLoadError  # noqa: E402

#: image sizes (w, h): the small ones, and the extremes of the issue
SIZES = st.one_of(st.tuples(st.integers(1, 40), st.integers(1, 40)),
                  st.sampled_from([(1, 1), (1, 4000), (4000, 1), (2, 900)]))
NUMBER = st.one_of(st.floats(-50, 120, allow_nan=False), st.sampled_from([0, -1, 1e9, math.nan, math.inf]))
JUNK = st.one_of(st.none(), st.text(max_size=3), st.booleans(), st.lists(st.integers(), max_size=2), st.just({}))

#: what the property tests cover; a reader registered in READERS must appear here (or be named in UNCOVERED)
COVERED: dict[str, str] = {}
UNCOVERED: dict[str, str] = {
    "wds": "the same ImageTextDataset as csv (tar shards); its shards are covered by test_data_imagetext's "
           "corrupt-member cases",
    "urbansound8k": "the same reader as esc50 with UrbanSound8K's column names",
    "flickr30k": "covered in test_reliability_properties_media.py (Sentences/ + Annotations/ XML generator)",
    "modulated-coco": "covered in test_reliability_properties_media.py (captions with tokens_positive spans)",
    "msrvtt": "covered in test_reliability_properties_media.py (PyAV-written clips, MSR-VTT JSON and lists)",
    "kinetics": "covered in test_reliability_properties_media.py (PyAV-written clips in class folders)",
    "wds-video": "covered in test_reliability_properties_media.py (tar shards of generated frame arrays and junk)",
    "vqa": "covered in test_reliability_properties_media.py (VQAv2 question / annotation pairs, broken or not)",
}


def covers(*names: str) -> Callable:
    def mark(fn: Callable) -> Callable:
        for name in names:
            COVERED[name] = fn.__name__
        return fn
    return mark


def _folder() -> Path:
    return Path(tempfile.mkdtemp(prefix="clipdense-prop-"))


def _write_image(path: Path, size: tuple[int, int], kind: str) -> None:
    """An RGB PNG of ``size``, or a broken file: truncated, empty, not an image."""
    if kind == "ok":
        Image.new("RGB", size, (90, 20, 200)).save(path)
    elif kind == "truncated":
        buffer = io.BytesIO()
        Image.new("RGB", size, (1, 2, 3)).save(buffer, format="PNG")
        path.write_bytes(buffer.getvalue()[: max(1, len(buffer.getvalue()) // 2)])
    elif kind == "empty":
        path.write_bytes(b"")
    else:
        path.write_text("not an image")


IMAGE_KIND = st.sampled_from(["ok"] * 6 + ["truncated", "empty", "text"])


def _one_line(error: BaseException) -> None:
    assert isinstance(error, DataError), f"{type(error).__name__}: {error}"
    assert "\n" not in str(error) and str(error).strip(), repr(str(error))


#: per reader: generated cases, and how many ended in a sample / a skipped sample / a refusal (DataError)
OUTCOMES: dict[str, Counter] = defaultdict(Counter)


def _read_all(open_reader: Callable[[], Any], check: Callable[[Sample], None], name: str) -> None:
    """Open and read every sample; a DataError (at open or for one file) must be one line, a skip (ImageLoadError)
    too; a sample must pass ``check``; any other exception fails the test. Outcomes are tallied in OUTCOMES."""
    tally = OUTCOMES[name]
    tally["cases"] += 1
    try:
        reader = open_reader()
    except DataError as error:
        _one_line(error)
        tally["refused at open"] += 1
        return
    for index in range(len(reader)):
        try:
            sample = reader[index]
        except ImageLoadError as error:   # skipped and counted by every caller (IndexedSource, evaluation)
            _one_line(error)
            tally["skipped samples"] += 1
            continue
        except DataError as error:        # a file that refuses the data as a whole
            _one_line(error)
            tally["refused samples"] += 1
            continue
        check(sample)
        tally["samples"] += 1
    tally["counted drops"] += getattr(getattr(reader, "skips", None), "count", 0)


def _check_regions(classes: int) -> Callable[[Sample], None]:
    def check(sample: Sample) -> None:
        width, height = sample.image.size
        boxes = sample.boxes
        assert boxes.shape[1:] == (4,) and torch.isfinite(boxes).all()
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
        assert (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        assert len(sample.labels) == len(boxes) and ((sample.labels >= 0) & (sample.labels < classes)).all()
        if sample.masks is not None:
            assert sample.masks.shape == (len(boxes), height, width)
    return check


# ---------------------------------------------------------------- COCO instances

BBOX = st.one_of(st.lists(NUMBER, min_size=4, max_size=4), JUNK, st.lists(NUMBER, min_size=3, max_size=3))
SEGMENTATION = st.one_of(st.none(), JUNK, st.lists(st.lists(st.floats(-5, 50, allow_nan=False), min_size=6,
                                                            max_size=8), min_size=1, max_size=2),
                         st.builds(lambda n: {"size": [4, 4], "counts": [n, 16 - n]}, st.integers(-2, 18)),
                         st.sampled_from([{"size": [4, 4], "counts": "P"}, {"size": [4, 4], "counts": "04"},
                                          {"counts": [1]}]))
VALID_ANNOTATION = st.fixed_dictionaries({
    "id": st.integers(1, 10 ** 6), "image_id": st.just(1), "category_id": st.sampled_from([1, 2]),
    "bbox": st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(1, 9), st.integers(1, 9)).map(list),
    "iscrowd": st.just(0), "segmentation": st.just([[0, 0, 3, 0, 3, 3]])})
RANDOM_ANNOTATION = st.fixed_dictionaries({
    "id": st.integers(1, 10 ** 6), "image_id": st.sampled_from([1, 1, 1, 2, 99, "1"]),
    "category_id": st.sampled_from([1, 1, 2, 7, None, "1", True]), "bbox": BBOX,
    "iscrowd": st.sampled_from([0, 0, 1]), "segmentation": SEGMENTATION})
ANNOTATION = st.one_of(VALID_ANNOTATION, RANDOM_ANNOTATION)


@st.composite
def coco_folders(draw: Any) -> tuple[Path, Path, bool]:
    root = _folder()
    size = draw(SIZES)
    _write_image(root / "a.png", size, draw(IMAGE_KIND))
    declared = draw(st.sampled_from(["true", "true", "other", "missing", "junk"]))
    dims = {"true": {"width": size[0], "height": size[1]}, "other": {"width": 4, "height": 4}, "missing": {},
            "junk": {"width": "wide", "height": None}}[declared]
    doc: Any = {"images": [{"id": 1, "file_name": "a.png", **dims}, {"id": 2, "file_name": "missing.png",
                                                                      "width": 5, "height": 5}],
                "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "sky", "isthing": 0}],
                "annotations": draw(st.lists(ANNOTATION, max_size=5))}
    shape = draw(st.sampled_from(["coco"] * 12 + ["list", "no-keys", "bad-image", "truncated"]))
    if shape == "list":
        doc = doc["annotations"]
    elif shape == "no-keys":
        doc = {"images": doc["images"]}
    elif shape == "bad-image":
        doc["images"][0] = {"file_name": "a.png"}
    text = json.dumps(doc)
    if shape == "truncated":
        text = text[: draw(st.integers(0, max(0, len(text) - 1)))]
    (root / "inst.json").write_text(text)
    return root, root / "inst.json", draw(st.booleans())


#: readers of COCO-shaped JSON (an images folder + one annotation file), opened through the registry; those whose
#: module is not in this checkout (another issue's work) are left out of the draw
COCO_LIKE = tuple(name for name in ("coco", "lvis") if name in READERS)


@covers(*COCO_LIKE)
@pytest.mark.parametrize("name", COCO_LIKE)
@settings(max_examples=20)
@given(case=coco_folders())
def test_coco_like_readers_never_traceback(case: tuple[Path, Path, bool], name: str) -> None:
    root, path, with_masks = case
    kind = READERS[name]
    spec = DataSpec(name, {"images": str(root), "annotations": str(path)})
    needs = kind.fields if with_masks else kind.fields - {"masks"}
    try:
        skips = SkipCounter()
        check = _check_regions(2) if name == "coco" else _check_boxes_only
        _read_all(lambda: kind.open(spec, "train", needs, skips), check, name)
    finally:
        shutil.rmtree(root)


def _check_boxes_only(sample: Sample) -> None:
    """Readers whose class list is not the file's two categories (LVIS's frequency split, grounding's phrases)."""
    width, height = sample.image.size
    boxes = sample.boxes
    assert torch.isfinite(boxes).all() and (boxes[:, :2] >= 0).all()
    assert (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()


# ---------------------------------------------------------------- COCO panoptic

@st.composite
def panoptic_folders(draw: Any) -> tuple[Path, Path, Path]:
    root = _folder()
    (root / "pan").mkdir()
    size = draw(SIZES)
    _write_image(root / "a.jpg", size, draw(IMAGE_KIND))
    png_size = size if draw(st.booleans()) else draw(SIZES)
    ids = np.zeros((png_size[1], png_size[0], 3), np.uint8)
    ids[: max(1, png_size[1] // 2), :, 0] = 7
    if draw(st.integers(0, 5)) == 0:
        (root / "pan" / "a.png").write_text("broken")
    else:
        Image.fromarray(ids).save(root / "pan" / "a.png")
    segment = st.fixed_dictionaries({"id": st.sampled_from([7, 0, 8, "7"]), "category_id": st.sampled_from([1, 5]),
                                     "bbox": BBOX, "iscrowd": st.sampled_from([0, 1])})
    doc: Any = {"images": [{"id": 1, "file_name": "a.jpg"}], "categories": [{"id": 1, "name": "cat"}],
                "annotations": [{"image_id": draw(st.sampled_from([1, 2])), "file_name": "a.png",
                                 "segments_info": draw(st.one_of(st.lists(st.one_of(segment, JUNK), max_size=3),
                                                                 JUNK))}]}
    if draw(st.integers(0, 6)) == 0:
        doc = draw(st.sampled_from([[], {"images": 3}, {"categories": [{"name": "x"}], "images": [],
                                                        "annotations": []}]))
    (root / "pan.json").write_text(json.dumps(doc))
    return root, root / "pan.json", root / "pan"


@covers("coco-panoptic")
@given(panoptic_folders())
def test_panoptic_reader_never_tracebacks(case: tuple[Path, Path, Path]) -> None:
    root, path, pngs = case
    try:
        _read_all(lambda: CocoPanopticRegions(root, path, pngs), _check_regions(1), "coco-panoptic")
    finally:
        shutil.rmtree(root)


# ---------------------------------------------------------------- semantic segmentation folders

@st.composite
def semseg_folders(draw: Any) -> tuple[Path, int, bool]:
    root = _folder()
    (root / "im").mkdir()
    (root / "lb").mkdir()
    classes = draw(st.integers(1, 5))
    (root / "classes.txt").write_text("".join(f"c{i}\n" for i in range(classes)))
    for n in range(draw(st.integers(1, 3))):
        size = draw(SIZES)
        _write_image(root / "im" / f"{n}.png", size, draw(IMAGE_KIND))
        label_size = size if draw(st.integers(0, 4)) else draw(SIZES)
        values = draw(st.sampled_from([0, 1, 3, 9, 254, 255]))
        label = np.full((label_size[1], label_size[0]), values, np.uint8)
        label[0, 0] = draw(st.integers(0, 255))
        mode = draw(st.sampled_from(["L", "L", "P", "I;16", "RGB", "broken"]))
        target = root / "lb" / f"{n}.png"
        if mode == "broken":
            target.write_bytes(b"\x89PNG\r\n")
        elif mode == "RGB":
            Image.fromarray(np.stack([label] * 3, -1)).save(target)
        elif mode == "I;16":
            Image.fromarray(label.astype(np.uint16)).save(target)
        else:
            Image.fromarray(label).convert(mode).save(target) if mode == "P" else Image.fromarray(label).save(target)
    return root, classes, draw(st.booleans())


@covers("semseg")
@given(semseg_folders())
def test_semseg_reader_never_tracebacks(case: tuple[Path, int, bool]) -> None:
    root, classes, reduce = case

    def check(sample: Sample) -> None:
        semantic = sample.semantic
        assert semantic.shape == (sample.image.height, sample.image.width)
        assert (((semantic >= 0) & (semantic < classes)) | (semantic == 255)).all()
        assert (semantic != 255).any()          # a map with no labelled pixel is skipped, never trained on

    try:
        _read_all(lambda: SemSegFolder(root / "im", root / "lb", root / "classes.txt", reduce_zero_label=reduce),
                  check, "semseg")
    finally:
        shutil.rmtree(root)


# ---------------------------------------------------------------- depth, ImageFolder, ModelNet, image-text, sounds

@covers("nyu-depth")
@given(SIZES, SIZES, st.sampled_from(["I;16", "I;16", "L", "broken", "zeros"]), IMAGE_KIND)
def test_depth_reader_never_tracebacks(size: tuple[int, int], depth_size: tuple[int, int], mode: str,
                                       kind: str) -> None:
    root = _folder()
    try:
        (root / "im").mkdir()
        (root / "d").mkdir()
        _write_image(root / "im" / "a.png", size, kind)
        depth = np.full((depth_size[1], depth_size[0]), 2500, np.uint16)
        if mode == "broken":
            (root / "d" / "a.png").write_bytes(b"\x89PNG")
        elif mode == "L":
            Image.fromarray((depth // 100).astype(np.uint8)).save(root / "d" / "a.png")
        else:
            Image.fromarray(depth * (mode != "zeros")).save(root / "d" / "a.png")

        def check(sample: Sample) -> None:
            assert sample.depth.shape == (sample.image.height, sample.image.width)
            assert torch.isfinite(sample.depth).all() and (sample.depth >= 0).all()

        _read_all(lambda: DepthFolder(root / "im", root / "d"), check, "nyu-depth")
    finally:
        shutil.rmtree(root)


@covers("imagefolder")
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c d"]), SIZES, IMAGE_KIND), max_size=4))
def test_imagefolder_reader_never_tracebacks(files: list[tuple[str, tuple[int, int], str]]) -> None:
    root = _folder()
    try:
        for n, (name, size, kind) in enumerate(files):
            (root / name).mkdir(exist_ok=True)
            _write_image(root / name / f"{n}.png", size, kind)

        def check(sample: Sample) -> None:
            assert 0 <= sample.image_label < len({f[0] for f in files})

        _read_all(lambda: ImageFolderDataset(root), check, "imagefolder")
    finally:
        shutil.rmtree(root)


POINT_ROWS = st.one_of(st.lists(st.lists(st.floats(-5, 5, allow_nan=False), min_size=3, max_size=3), max_size=6),
                       st.lists(st.lists(NUMBER, min_size=2, max_size=6), max_size=4))


@covers("modelnet")
@given(POINT_ROWS, st.sampled_from(["txt", "off", "junk"]), st.integers(1, 64))
def test_modelnet_reader_never_tracebacks(rows: list[list[float]], kind: str, count: int) -> None:
    root = _folder()
    try:
        (root / "cup" / "train").mkdir(parents=True)
        target = root / "cup" / "train" / "cup_0001.off"
        if kind == "txt":   # the resampled layout: shape names, the split's shape list, comma-separated rows
            (root / "modelnet40_shape_names.txt").write_text("cup\n")
            (root / "modelnet40_train.txt").write_text("cup_0001\n")
            (root / "cup" / "cup_0001.txt").write_text("\n".join(",".join(f"{v}" for v in row) for row in rows))
        elif kind == "off":
            faces = "3 0 1 2\n" if len(rows) >= 3 else ""
            target.write_text(f"OFF\n{len(rows)} {1 if faces else 0} 0\n" +
                              "".join(" ".join(f"{v}" for v in row) + "\n" for row in rows) + faces)
        else:
            target.write_bytes(bytes(range(0, 256, 7)))

        def check(sample: Sample) -> None:
            assert sample.points.ndim == 2 and sample.points.shape[1] == 3 and torch.isfinite(sample.points).all()
            assert sample.image_label == 0

        _read_all(lambda: ModelNetPoints(root, "train", count), check, "modelnet")
    finally:
        shutil.rmtree(root)


@covers("csv")
@given(st.lists(st.tuples(SIZES, IMAGE_KIND, st.one_of(st.text(max_size=8), st.just(""))), min_size=1, max_size=3),
       st.sampled_from(["ok", "ok", "no-title", "empty", "binary"]))
def test_imagetext_csv_reader_never_tracebacks(rows: list, shape: str) -> None:
    import csv

    root = _folder()
    try:
        with open(root / "data.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["filepath", "title"] if shape != "no-title" else ["filepath", "caption-ish"])
            for n, (size, kind, caption) in enumerate(rows):
                _write_image(root / f"{n}.png", size, kind)
                writer.writerow([str(root / f"{n}.png"), caption])
        if shape == "empty":
            (root / "data.csv").write_text("")
        elif shape == "binary":
            (root / "data.csv").write_bytes(b"\xff\xfe\x00")
        tally = OUTCOMES["csv"]
        tally["cases"] += 1
        try:
            skips = SkipCounter()
            dataset = ImageTextDataset(root / "data.csv", "train", format="csv", skip_counter=skips)
            for sample in dataset:
                assert isinstance(sample["caption"], str) and sample["image"].size[0] >= 1
                tally["samples"] += 1
            tally["skipped samples"] += skips.count
        except DataError as error:
            _one_line(error)
            tally["refused at open"] += 1
    finally:
        shutil.rmtree(root)


def _wav(path: Path, frames: int, rate: int, width: int = 2) -> None:
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(width)
        handle.setframerate(rate)
        handle.writeframes((np.sin(np.arange(frames) / 3.0) * 8000).astype("<i2").tobytes()[: frames * width])


@covers("esc50")
@given(st.lists(st.tuples(st.integers(0, 4000), st.sampled_from([8000, 44100]), st.sampled_from(
    ["1"] * 6 + ["0", "x", "6"]), st.sampled_from(["0"] * 6 + ["1", "-1", "y"]), st.sampled_from([True] * 4 + [False])),
    min_size=1, max_size=3))
def test_esc50_reader_never_tracebacks(clips: list) -> None:
    from clipdense.data.formats.audio import open_esc50

    root = _folder()
    try:
        (root / "audio").mkdir()
        (root / "meta").mkdir()
        lines = ["filename,fold,target,category,esc10,src_file,take"]
        for n, (frames, rate, fold, target, present) in enumerate(clips):
            if present:
                _wav(root / "audio" / f"{n}.wav", frames, rate)
            lines.append(f"{n}.wav,{fold},{target},{'dog' if target == '0' else 'rain'},False,{n},A")
        (root / "meta" / "esc50.csv").write_text("\n".join(lines) + "\n")

        def check(sample: Sample) -> None:
            assert sample.audio.samples.ndim == 1 and sample.audio.samples.numel() > 0
            assert torch.isfinite(sample.audio.samples).all()

        _read_all(lambda: open_esc50(root, None, skip_counter=SkipCounter()), check, "esc50")
    finally:
        shutil.rmtree(root)


@covers("audiotext")
@given(st.integers(0, 2000), IMAGE_KIND, st.sampled_from(["ok", "no-sound", "no-columns"]))
def test_audiotext_reader_never_tracebacks(frames: int, kind: str, shape: str) -> None:
    from clipdense.data.formats.audio import SoundTriplets

    root = _folder()
    try:
        _write_image(root / "a.png", (8, 8), kind)
        if shape != "no-sound":
            _wav(root / "a.wav", frames, 16000)
        header = "filepath,audiopath,title" if shape != "no-columns" else "x,y"
        (root / "s.csv").write_text(f"{header}\na.png,a.wav,a red circle\n")
        _read_all(lambda: SoundTriplets(root / "s.csv"), lambda sample: None, "audiotext")
    finally:
        shutil.rmtree(root)


def test_every_registered_reader_has_a_property_test() -> None:
    missing = sorted(set(READERS) - set(COVERED) - set(UNCOVERED))
    assert not missing, f"readers without a property test here (add one, or a reason in UNCOVERED): {missing}"


def test_the_generators_reach_every_outcome() -> None:
    """Run after the reader properties (file order): each reader's generated cases gave samples and refusals or
    skips both, so no property above holds only because every case was refused (or none was)."""
    ran = {name: tally for name, tally in OUTCOMES.items() if tally["cases"]}
    if not ran:
        pytest.skip("run with the reader properties above")
    for name, tally in ran.items():
        refused = tally["refused at open"] + tally["skipped samples"] + tally["refused samples"]
        assert tally["samples"] > 0 and refused > 0, (name, dict(tally))
    print("\n" + "\n".join(f"{name}: {dict(tally)}" for name, tally in sorted(ran.items())))


# ---------------------------------------------------------------- images of any size

@given(SIZES, st.sampled_from(["RGB", "L", "RGBA", "I;16", "F", "P", "1", "CMYK"]))
def test_open_image_any_size_and_mode(size: tuple[int, int], mode: str) -> None:
    root = _folder()
    try:
        path = root / ("a.tiff" if mode in ("F", "CMYK") else "a.png")
        Image.new(mode, size).save(path)
        image = open_image(path)
        assert image.mode == "RGB" and image.size == size
    finally:
        shutil.rmtree(root)


# ---------------------------------------------------------------- geometry transforms

@st.composite
def box_samples(draw: Any) -> Sample:
    """An image with boxes inside it and, for each box, the mask that fills it exactly."""
    width, height = draw(SIZES)
    boxes, masks = [], []
    for _ in range(draw(st.integers(0, 4))):
        x0, y0 = draw(st.integers(0, width - 1)), draw(st.integers(0, height - 1))
        x1, y1 = draw(st.integers(x0 + 1, width)), draw(st.integers(y0 + 1, height))
        boxes.append([x0, y0, x1, y1])
        mask = torch.zeros(height, width, dtype=torch.bool)
        mask[y0:y1, x0:x1] = True
        masks.append(mask)
    semantic = torch.zeros(height, width, dtype=torch.long)
    depth = torch.ones(height, width) + (masks[0].float() if masks else 0.0)   # 2 m on the first box's mask
    return Sample(Image.new("RGB", (width, height)), "k", boxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                  labels=torch.zeros(len(boxes), dtype=torch.long),
                  masks=torch.stack(masks) if masks else torch.zeros(0, height, width, dtype=torch.bool),
                  semantic=semantic, depth=depth)


TRANSFORMS = st.one_of(st.builds(Letterbox, st.integers(1, 64)),
                       st.builds(RandomResizedCrop, st.integers(1, 64)),
                       st.builds(ScaleJitter, st.integers(1, 64)),
                       st.just(RandomHFlip(1.0)))


@given(box_samples(), TRANSFORMS, st.integers(0, 2 ** 31 - 1))
def test_geometry_keeps_boxes_inside_and_masks_aligned(sample: Sample, op: Any, seed: int) -> None:
    out = op(sample, torch.Generator().manual_seed(seed))
    width, height = out.image.size
    assert out.masks.shape == (len(out.boxes), height, width) and out.semantic.shape == (height, width)
    assert out.depth.shape == (height, width)   # the depth map moves with the pixels, like the masks
    if len(sample.boxes) and len(out.boxes) == len(sample.boxes):
        assert torch.equal(out.depth == 2, out.masks[0])
    boxes = out.boxes
    assert (boxes[:, :2] >= -1e-4).all() and (boxes[:, 2] <= width + 1e-4).all() and \
        (boxes[:, 3] <= height + 1e-4).all()
    sx, sy = width / sample.image.width, height / sample.image.height
    slack = 1.0 + max(sx, sy, 1.0 / max(sx, 1e-9), 1.0)   # nearest-neighbour masks move by up to a source pixel
    for box, mask in zip(boxes.tolist(), out.masks):
        if not mask.any():
            continue
        ys, xs = torch.nonzero(mask, as_tuple=True)
        assert xs.min() >= box[0] - slack and xs.max() + 1 <= box[2] + slack, (box, xs.min(), xs.max())
        assert ys.min() >= box[1] - slack and ys.max() + 1 <= box[3] + slack, (box, ys.min(), ys.max())


@given(box_samples(), st.data())
def test_crop_keeps_boxes_inside_the_window(sample: Sample, data: Any) -> None:
    width, height = sample.image.size
    top, left = data.draw(st.integers(0, height - 1)), data.draw(st.integers(0, width - 1))
    h, w = data.draw(st.integers(1, height - top)), data.draw(st.integers(1, width - left))
    out = crop(sample, top, left, h, w)
    assert out.image.size == (w, h) and out.masks.shape[1:] == (h, w)
    assert torch.equal(out.depth, sample.depth[top:top + h, left:left + w])
    assert ((out.boxes[:, 2] - out.boxes[:, 0]) >= 1).all() and (out.boxes[:, 2] <= w).all() and \
        (out.boxes[:, 3] <= h).all() and (out.boxes[:, :2] >= 0).all()
    for box, mask in zip(out.boxes.tolist(), out.masks):   # a cropped box still holds exactly its mask
        ys, xs = torch.nonzero(mask, as_tuple=True)
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == tuple(int(v) for v in box)
