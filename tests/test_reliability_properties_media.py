"""Issue 32: property-based tests (Hypothesis) over the readers added beside the image readers: grounding
(modulated-COCO JSON and Flickr30k Entities). Same contract as test_reliability_properties.py: generated files give
a ``Sample`` that keeps the invariants (boxes inside the image, each box's phrase one of the caption's phrases,
every span inside the caption), a counted skip (``ImageLoadError``) or a one-line ``DataError``; never another
exception. Example count and seed: the ``clipdense`` profile in conftest.py."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, strategies as st  # noqa: E402

from clipdense.data.readers import READERS  # noqa: E402
from clipdense.data.sample import Sample  # noqa: E402
from clipdense.data.skips import SkipCounter  # noqa: E402
from clipdense.data.spec import DataSpec  # noqa: E402
from test_reliability_properties import (IMAGE_KIND, JUNK, NUMBER, OUTCOMES, SIZES, _folder, _read_all,  # noqa: E402
                                         _write_image)

#: the readers this file covers (test_reliability_properties.UNCOVERED points here for them)
HERE = ("modulated-coco", "flickr30k", "kinetics", "msrvtt", "wds-video", "vqa")
CAPTION = "a red circle left of two blue stars"
SPAN = st.one_of(st.tuples(st.integers(-3, 40), st.integers(-3, 40)).map(list), JUNK)
GROUNDING_BBOX = st.one_of(st.lists(NUMBER, min_size=4, max_size=4), JUNK)
#: GLIPv2's instance masks ride in a COCO segmentation: polygons, an RLE, or junk
SEGMENTATION = st.one_of(st.just([[1.0, 1.0, 6.0, 1.0, 6.0, 6.0]]), st.just({"size": [2, 2], "counts": [4]}),
                         st.lists(st.lists(NUMBER, max_size=7), max_size=2), JUNK)
VALID_GROUNDING = st.fixed_dictionaries({
    "image_id": st.just(1), "tokens_positive": st.sampled_from([[[0, 12]], [[21, 35]], [[2, 5], [6, 12]]]),
    "bbox": st.tuples(st.integers(0, 5), st.integers(0, 5), st.integers(1, 9), st.integers(1, 9)).map(list),
    "phrase_ids": st.sampled_from([0, 1])}, optional={"segmentation": SEGMENTATION})
RANDOM_GROUNDING = st.fixed_dictionaries({
    "image_id": st.sampled_from([1, 1, 2, "1", None]), "bbox": GROUNDING_BBOX,
    "tokens_positive": st.one_of(st.lists(SPAN, max_size=2), JUNK), "phrase_ids": st.sampled_from([0, 1, [0], None])})


def _check_grounding(sample: Sample) -> None:
    width, height = sample.image.size
    boxes, phrases = sample.boxes, sample.phrases
    assert torch.isfinite(boxes).all() and (boxes[:, :2] >= 0).all()
    assert (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()
    assert (boxes[:, 2] - boxes[:, 0] >= 1).all() and (boxes[:, 3] - boxes[:, 1] >= 1).all()
    assert len(phrases.box_phrase) == len(boxes) and ((phrases.box_phrase >= 0) &
                                                      (phrases.box_phrase < len(phrases.spans))).all()
    assert phrases.text == sample.caption and all(0 <= s < e <= len(phrases.text)
                                                   for spans in phrases.spans for s, e in spans)
    if sample.masks is not None:     # masks asked for: one (H, W) bool mask per kept box
        assert sample.masks.dtype == torch.bool and tuple(sample.masks.shape) == (len(boxes), height, width)


@st.composite
def modulated_folders(draw: Any) -> tuple[Path, Path]:
    root = _folder()
    size = draw(SIZES)
    _write_image(root / "a.png", size, draw(IMAGE_KIND))
    caption = draw(st.sampled_from([CAPTION] * 6 + ["", "   ", 5, None]))
    anns = draw(st.lists(st.one_of(VALID_GROUNDING, RANDOM_GROUNDING, JUNK), max_size=5))
    doc: Any = {"images": [{"id": 1, "file_name": "a.png", "width": size[0], "height": size[1], "caption": caption}],
                "annotations": [{"id": i + 1, **a} if isinstance(a, dict) else a for i, a in enumerate(anns)],
                "categories": [{"id": 1, "name": "object"}]}
    shape = draw(st.sampled_from(["ok"] * 10 + ["list", "no-images", "bad-image", "truncated"]))
    if shape == "list":
        doc = doc["annotations"]
    elif shape == "no-images":
        doc = {"annotations": doc["annotations"]}
    elif shape == "bad-image":
        doc["images"][0] = draw(st.sampled_from([{"file_name": "a.png"}, {"id": 1, "file_name": "a.png",
                                                                          "caption": CAPTION, "width": "wide"}, 3]))
    text = json.dumps(doc)
    if shape == "truncated":
        text = text[: draw(st.integers(0, max(0, len(text) - 1)))]
    (root / "g.json").write_text(text)
    return root, root / "g.json"


@given(modulated_folders(), st.booleans())
def test_modulated_coco_reader_never_tracebacks(case: tuple[Path, Path], masks: bool) -> None:
    root, path = case
    try:
        spec = DataSpec("modulated-coco", {"images": str(root), "annotations": str(path)})
        kind = READERS["modulated-coco"]
        needs = kind.fields if masks else kind.fields - {"masks"}   # masks are read only when asked for
        _read_all(lambda: kind.open(spec, "train", needs, SkipCounter()), _check_grounding, "modulated-coco")
    finally:
        shutil.rmtree(root)


VQA_TEXTS = st.sampled_from(["What colour is the star?", "How many circles are there?", "Is it red?"])
VQA_ANSWER = st.sampled_from(["red", "2", "Two.", "yes", "a circle"])
#: how a generated VQAv2 pair is broken (most are not)
VQA_SHAPES = st.sampled_from(["ok"] * 8 + ["bad-question", "unknown-question", "junk-answers", "no-image", "list",
                                           "truncated"])


def _check_question(sample: Sample) -> None:
    question = sample.question
    assert sample.image is not None and question.text.strip()
    assert question.answers and all(isinstance(a, str) for a in question.answers)


@st.composite
def vqa_folders(draw: Any) -> tuple[Path, dict[str, str]]:
    root = _folder()
    (root / "images").mkdir()
    _write_image(root / "images" / "000001.png", draw(SIZES), draw(IMAGE_KIND))
    count = draw(st.integers(1, 3))
    questions: Any = {"data_subtype": "val2014", "questions": [
        {"image_id": 1, "question_id": 10 + n, "question": draw(VQA_TEXTS)} for n in range(count)]}
    annotations: Any = {"annotations": [
        {"question_id": 10 + n, "image_id": 1, "question_type": "colour", "answer_type": "other",
         "multiple_choice_answer": "red", "answers": [{"answer": draw(VQA_ANSWER), "answer_id": k + 1}
                                                      for k in range(10)]} for n in range(count)]}
    shape = draw(VQA_SHAPES)
    if shape == "bad-question":
        questions["questions"][0] = draw(st.one_of(st.just({"question_id": "10", "question": 7}), JUNK))
    elif shape == "unknown-question":
        annotations["annotations"][0]["question_id"] = 99
    elif shape == "junk-answers":
        annotations["annotations"][0]["answers"] = draw(st.one_of(st.lists(st.sampled_from([3, None]), max_size=2),
                                                                  JUNK))
    elif shape == "no-image":
        questions["questions"][0]["image_id"] = 2
    elif shape == "list":
        questions = questions["questions"]
    text = json.dumps(questions)
    if shape == "truncated":
        text = text[: draw(st.integers(0, max(0, len(text) - 1)))]
    (root / "q.json").write_text(text)
    (root / "a.json").write_text(json.dumps(annotations))
    return root, {"images": str(root / "images"), "questions": str(root / "q.json"),
                  "annotations": str(root / "a.json")}


@given(vqa_folders())
def test_vqa_reader_never_tracebacks(case: tuple[Path, dict[str, str]]) -> None:
    root, args = case
    try:
        kind = READERS["vqa"]
        _read_all(lambda: kind.open(DataSpec("vqa", args), "train", kind.fields, SkipCounter()), _check_question,
                  "vqa")
    finally:
        shutil.rmtree(root)


SENTENCES = st.sampled_from(["[/EN#1/people A child] holds [/EN#2/other a ball]", "[/EN#2/other a ball] rolls",
                             "[/EN#0/notvisual the scene] is dark", "[/EN#3/other ] is empty",
                             "[/EN#1/people an unclosed mark", "plain words without phrases",
                             "[/EN#9/other a thing without box]"])
XML_NUMBER = st.one_of(st.integers(-5, 60).map(str), st.sampled_from(["", "x", "1e9", "nan"]))


@st.composite
def flickr_folders(draw: Any) -> Path:
    root = _folder()
    for folder in ("Sentences", "Annotations", "images"):
        (root / folder).mkdir()
    size = draw(SIZES)
    _write_image(root / "images" / "1.jpg", size, draw(IMAGE_KIND))
    (root / "Sentences" / "1.txt").write_text("\n".join(draw(st.lists(SENTENCES, min_size=1, max_size=3))) + "\n")
    objects = []
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(["1", "2", "2", "x"]))
        if draw(st.integers(0, 5)) == 0:
            objects.append(f"<object><name>{name}</name><nobndbox>1</nobndbox></object>")
            continue
        coords = "".join(f"<{k}>{draw(XML_NUMBER)}</{k}>" for k in ("xmin", "ymin", "xmax", "ymax"))
        objects.append(f"<object><name>{name}</name><bndbox>{coords}</bndbox></object>")
    xml = (f"<annotation><filename>1.jpg</filename><size><width>{size[0]}</width><height>{size[1]}</height>"
           f"</size>{''.join(objects)}</annotation>")
    if draw(st.integers(0, 9)) == 0:
        xml = xml[: draw(st.integers(0, len(xml) - 1))]
    (root / "Annotations" / "1.xml").write_text(xml)
    return root


@given(flickr_folders())
def test_flickr30k_reader_never_tracebacks(root: Path) -> None:
    try:
        spec = DataSpec("flickr30k", {"root": str(root), "images": str(root / "images")})
        kind = READERS["flickr30k"]
        _read_all(lambda: kind.open(spec, "train", kind.fields, SkipCounter()), _check_grounding, "flickr30k")
    finally:
        shutil.rmtree(root)


# ---------------------------------------------------------------- videos (MSR-VTT, Kinetics): PyAV-written clips

VIDEO_KIND = st.sampled_from(["ok"] * 5 + ["one-frame", "empty", "text", "truncated"])
FRAME_SIZES = st.one_of(st.tuples(st.integers(1, 24), st.integers(1, 24)), st.sampled_from([(1, 1), (2, 600)]))


def _write_clip(path: Path, kind: str, size: tuple[int, int], frames: int) -> None:
    """A small MPEG-4 clip of ``frames`` frames of ``size`` (w, h), or a broken one."""
    import numpy as np

    from clipdense.data.video import write_video

    path.parent.mkdir(parents=True, exist_ok=True)
    if kind in ("empty", "text"):
        path.write_bytes(b"" if kind == "empty" else b"not a video")
        return
    count = 1 if kind == "one-frame" else frames
    array = np.full((count, size[1], size[0], 3), 120, np.uint8)
    array[:, : max(1, size[1] // 2)] = 30
    write_video(path, array)
    if kind == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: max(1, len(data) // 2)])


def _check_frames(frames_wanted: int) -> Any:
    def check(sample: Sample) -> None:
        frames = sample.frames
        assert frames.ndim == 4 and frames.shape[-1] == 3 and frames.dtype == torch.uint8
        assert 1 <= frames.shape[0] <= frames_wanted
    return check


def _spec_sampling(draw: Any) -> dict[str, str]:
    return {"frames": str(draw(st.integers(1, 4))), "sampling": draw(st.sampled_from(["uniform", "fps"])),
            "fps": draw(st.sampled_from(["1", "8"]))}


@st.composite
def kinetics_folders(draw: Any) -> tuple[Path, dict[str, str]]:
    root = _folder()
    for n in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from(["waving", "jumping_jacks"]))
        _write_clip(root / "train" / name / f"c{n}.mp4", draw(VIDEO_KIND), draw(FRAME_SIZES), draw(st.integers(2, 5)))
    if draw(st.integers(0, 7)) == 0:
        (root / "train" / "empty_class").mkdir()
    return root, _spec_sampling(draw)


@given(kinetics_folders())
def test_kinetics_reader_never_tracebacks(case: tuple[Path, dict[str, str]]) -> None:
    root, sampling = case
    try:
        spec = DataSpec("kinetics", {"root": str(root), **sampling})
        kind = READERS["kinetics"]
        _read_all(lambda: kind.open(spec, "train", kind.fields, SkipCounter()), _check_frames(int(sampling["frames"])),
                  "kinetics")
    finally:
        shutil.rmtree(root)


FRAME_ARRAYS = st.sampled_from(["ok", "ok", "ok", "junk", "float", "gray", "empty", "one"])


def _frames_member(kind: str, t: int) -> bytes:
    """A shard's KEY.frames.npy: decoded frames, or what a broken writer leaves."""
    import io

    import numpy as np
    arrays = {"ok": np.zeros((t, 3, 5, 3), np.uint8), "float": np.zeros((t, 3, 5, 3), np.float32),
              "gray": np.zeros((t, 3, 5), np.uint8), "empty": np.zeros((0, 3, 5, 3), np.uint8),
              "one": np.zeros((1, 1, 1, 3), np.uint8)}
    if kind == "junk":
        return b"\x93NUMPY junk"
    buffer = io.BytesIO()
    np.save(buffer, arrays[kind], allow_pickle=False)
    return buffer.getvalue()


@st.composite
def frame_shards(draw: Any) -> tuple[Path, dict[str, str]]:
    import io
    import tarfile
    root = _folder()
    for n in range(draw(st.integers(1, 2))):
        shape = draw(st.sampled_from(["tar"] * 6 + ["junk", "empty"]))
        if shape == "junk":
            (root / f"s{n}.tar").write_bytes(draw(st.binary(max_size=40)))
            continue
        with tarfile.open(root / f"s{n}.tar", "w") as tar:
            for k in range(0 if shape == "empty" else draw(st.integers(1, 3))):
                members = {f"k{k}.frames.npy": _frames_member(draw(FRAME_ARRAYS), draw(st.integers(1, 6))),
                           f"k{k}.txt": draw(st.sampled_from([b"a circle moves", b"", b"\xff\xfe"])),
                           f"k{k}.json": draw(st.sampled_from([b'{"fps": 8}', b"{}", b"not json"]))}
                for name, data in members.items():
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    return root, _spec_sampling(draw)


@given(frame_shards())
def test_frame_shards_reader_never_tracebacks(case: tuple[Path, dict[str, str]]) -> None:
    root, sampling = case
    try:
        spec = DataSpec("wds-video", {"path": str(root), **sampling})
        kind = READERS["wds-video"]
        _read_all(lambda: kind.open(spec, "train", kind.fields, SkipCounter()), _check_frames(int(sampling["frames"])),
                  "wds-video")
    finally:
        shutil.rmtree(root)


@st.composite
def msrvtt_folders(draw: Any) -> tuple[Path, dict[str, str]]:
    root = _folder()
    ids = ["video0", "video1"]
    for vid in ids:
        _write_clip(root / "videos" / "all" / f"{vid}.mp4", draw(VIDEO_KIND), draw(FRAME_SIZES),
                    draw(st.integers(2, 5)))
    sentence = st.fixed_dictionaries({"video_id": st.sampled_from(ids + ["video9", 3]),
                                      "caption": st.sampled_from(["a circle moves", "", 7])})
    meta: Any = {"videos": [{"video_id": v, "split": "train"} for v in ids],
                 "sentences": draw(st.lists(sentence, max_size=4))}
    shape = draw(st.sampled_from(["ok"] * 6 + ["list", "no-sentences", "truncated"]))
    text = json.dumps(meta if shape == "ok" else [] if shape == "list" else {"videos": []})
    if shape == "truncated":
        text = text[: max(0, len(text) - 7)]
    (root / "MSRVTT_data.json").write_text(text)
    train = draw(st.lists(st.sampled_from(ids + ["video9"]), min_size=0, max_size=2))
    header = draw(st.sampled_from(["video_id", "video_id", "vid"]))
    (root / "MSRVTT_train.9k.csv").write_text(header + "\n" + "".join(f"{v}\n" for v in train))
    return root, _spec_sampling(draw)


@given(msrvtt_folders())
def test_msrvtt_reader_never_tracebacks(case: tuple[Path, dict[str, str]]) -> None:
    root, sampling = case
    try:
        spec = DataSpec("msrvtt", {"root": str(root), **sampling})
        kind = READERS["msrvtt"]
        _read_all(lambda: kind.open(spec, "train", kind.fields, SkipCounter()), _check_frames(int(sampling["frames"])),
                  "msrvtt")
    finally:
        shutil.rmtree(root)


def test_these_readers_are_registered_and_reach_every_outcome() -> None:
    """The readers named here are the registry's (test_reliability_properties lists them as covered here), and
    their generated cases gave samples and refusals or skips both."""
    assert set(HERE) <= set(READERS)
    ran = {name: OUTCOMES[name] for name in HERE if OUTCOMES[name]["cases"]}
    if not ran:
        pytest.skip("run with the reader properties above")
    for name, tally in ran.items():
        refused = tally["refused at open"] + tally["skipped samples"] + tally["refused samples"]
        assert tally["samples"] > 0 and refused > 0, (name, dict(tally))
    print("\n" + "\n".join(f"{name}: {dict(tally)}" for name, tally in sorted(ran.items())))


@pytest.mark.parametrize("entry", [None, {"caption": "a circle moves"}, "video0"])
def test_msrvtt_sentences_that_are_not_dicts_are_one_line(entry: Any, tmp_path: Path) -> None:
    from clipdense.data.formats.video import MsrvttClips
    from clipdense.errors import DataError

    (tmp_path / "MSRVTT_data.json").write_text(json.dumps({"videos": [], "sentences": [entry]}))
    (tmp_path / "MSRVTT_train.9k.csv").write_text("video_id\nvideo0\n")
    with pytest.raises(DataError):
        MsrvttClips(tmp_path, "train")


# ---------------------------------------------------------------- geometry on grounded video samples

@st.composite
def grounded_video_samples(draw: Any) -> Sample:
    """A sample with boxes, their phrases and video frames that are its image repeated."""
    import numpy as np
    from PIL import Image

    from clipdense.data.phrases import Phrases

    width, height = draw(st.one_of(st.tuples(st.integers(1, 32), st.integers(1, 32)), st.sampled_from([(1, 600)])))
    boxes = []
    for _ in range(draw(st.integers(0, 4))):
        x0, y0 = draw(st.integers(0, width - 1)), draw(st.integers(0, height - 1))
        boxes.append([x0, y0, draw(st.integers(x0 + 1, width)), draw(st.integers(y0 + 1, height))])
    pixels = np.asarray(draw(st.lists(st.integers(0, 255), min_size=3, max_size=3)), np.uint8)
    array = np.tile(pixels, (height, width, 1))
    array[: max(1, height // 2), : max(1, width // 3)] = 255 - pixels
    frames = torch.from_numpy(np.stack([array, array]))
    phrases = Phrases(CAPTION, (((0, 12),), ((21, 35),)),
                      torch.tensor(draw(st.lists(st.integers(0, 1), min_size=len(boxes), max_size=len(boxes))),
                                   dtype=torch.long))
    return Sample(Image.fromarray(array), "k", caption=CAPTION,
                  boxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), phrases=phrases, frames=frames)


@given(grounded_video_samples(), st.integers(0, 3), st.integers(1, 48), st.integers(0, 2 ** 31 - 1))
def test_geometry_moves_phrases_and_frames_with_the_boxes(sample: Sample, which: int, size: int, seed: int) -> None:
    """Each box keeps its phrase (a box that leaves the image takes its phrase row with it) and the frames take the
    image's size (exactly its pixels under a flip)."""
    from collections import Counter

    from clipdense.data.transforms import Letterbox, RandomHFlip, RandomResizedCrop, ScaleJitter

    op = (Letterbox(size), RandomResizedCrop(size), ScaleJitter(size), RandomHFlip(1.0))[which]
    out = op(sample, torch.Generator().manual_seed(seed))
    width, height = out.image.size
    assert len(out.phrases.box_phrase) == len(out.boxes) and out.phrases.spans == sample.phrases.spans
    assert not Counter(out.phrases.box_phrase.tolist()) - Counter(sample.phrases.box_phrase.tolist())
    assert out.frames.shape == (2, height, width, 3) and out.frames.dtype == torch.uint8
    if isinstance(op, RandomHFlip):
        import numpy as np
        assert torch.equal(out.frames[0], torch.from_numpy(np.array(out.image)))
        assert out.phrases.box_phrase.tolist() == sample.phrases.box_phrase.tolist()
