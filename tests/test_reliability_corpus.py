"""Issue 16: a corpus of odd and broken image files through every command that reads images (train, distill on
the grid and on boxes, segment, classify, eval). Nothing crashes; each file is decoded correctly (checked pixel
by pixel) or skipped, and every skipped file is named (with its reason) and counted."""
from __future__ import annotations

import csv
import io
import json
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image

from clipdense.cli.main import main
from clipdense.data.images import open_image
from clipdense.data.skips import SKIP_LOG, read_skip_log

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


@dataclass(frozen=True)
class Case:
    """A corpus file: how to make its bytes, and either its decoded size + a pixel check, or the skip reason."""

    make: Callable[[], bytes]
    size: tuple[int, int] | None = None              # (width, height) after decoding (EXIF applied)
    check: Callable[[np.ndarray], bool] | None = None
    skip: str | None = None                          # words of the reason it is skipped


def _save(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def _noise(size: int = 32, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((size, size, 3)) * 255).astype("uint8"))


def _near(pixel: np.ndarray, colour: tuple[int, ...], tolerance: int = 8) -> bool:
    return bool(np.abs(pixel.astype(int) - np.array(colour)).max() <= tolerance)


def _palette_transparent() -> bytes:
    """Left half index 0 (transparent), right half index 1 (red)."""
    image = Image.new("P", (8, 8), 0)
    image.putpalette([0, 255, 0] + list(RED) + [0, 0, 0] * 254)
    image.paste(1, (4, 0, 8, 8))
    return _save(image, "PNG", transparency=0)


def _la() -> bytes:
    """Grey 100, opaque on the left half, fully transparent on the right."""
    values = np.zeros((8, 8, 2), np.uint8)
    values[..., 0], values[:, :4, 1] = 100, 255
    return _save(Image.fromarray(values, "LA"), "PNG")


def _exif_rotated() -> bytes:
    """20x10 pixels, left half red, with EXIF orientation 6 (shown rotated 90 degrees clockwise: 10x20, red on top)."""
    image = Image.new("RGB", (20, 10), BLUE)
    image.paste(RED, (0, 0, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6
    return _save(image, "JPEG", quality=95, exif=exif.tobytes())


def _animated() -> bytes:
    frames = [Image.new("RGB", (12, 12), RED), Image.new("RGB", (12, 12), BLUE)]
    return _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def _bomb() -> bytes:
    """A real 1x1 PNG whose header claims 100000 x 100000 pixels."""
    data = bytearray(_save(Image.new("RGB", (1, 1)), "PNG"))
    ihdr = data.index(b"IHDR")
    data[ihdr + 4:ihdr + 12] = struct.pack(">II", 100_000, 100_000)
    data[ihdr + 17:ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr:ihdr + 17])))
    return bytes(data)


def _cut(data: bytes) -> bytes:
    return data[: len(data) // 2]


CORPUS: dict[str, Case] = {
    "truncated.png": Case(lambda: _cut(_save(_noise(), "PNG")), skip="corrupt or truncated"),
    "truncated.jpg": Case(lambda: _cut(_save(_noise(), "JPEG")), skip="corrupt or truncated"),
    "truncated.webp": Case(lambda: _cut(_save(_noise(), "WEBP")), skip="corrupt or truncated"),
    "empty.jpg": Case(lambda: b"", skip="empty file"),
    "text.jpg": Case(lambda: b"this is a text file, not a JPEG\n", skip="not a readable image"),
    "bomb.png": Case(_bomb, skip="pixel limit"),
    "cmyk.jpg": Case(lambda: _save(Image.new("CMYK", (16, 16), (255, 0, 0, 0)), "JPEG", quality=95), (16, 16),
                     lambda a: _near(a[8, 8], (0, 255, 255))),
    "grey16.png": Case(lambda: _save(Image.fromarray(np.full((10, 12), 40000, np.uint16)), "PNG"), (12, 10),
                       lambda a: _near(a[5, 5], (156, 156, 156), 1)),
    "palette-transparent.png": Case(_palette_transparent, (8, 8),
                                    lambda a: _near(a[4, 1], WHITE, 0) and _near(a[4, 6], RED, 0)),
    "la.png": Case(_la, (8, 8), lambda a: _near(a[4, 1], (100, 100, 100), 0) and _near(a[4, 6], WHITE, 0)),
    "onebit.png": Case(lambda: _save(Image.fromarray(np.indices((8, 8)).sum(0) % 2 == 0), "PNG"), (8, 8),
                       lambda a: _near(a[0, 0], WHITE, 0) and _near(a[0, 1], (0, 0, 0), 0)),
    "float.tif": Case(lambda: _save(Image.fromarray(np.full((6, 9), 0.5, np.float32), "F"), "TIFF"), (9, 6),
                      lambda a: _near(a[3, 3], (128, 128, 128), 1)),
    "exif-rotated.jpg": Case(_exif_rotated, (10, 20), lambda a: _near(a[3, 5], RED, 40) and _near(a[16, 5], BLUE, 40)),
    "animated.gif": Case(_animated, (12, 12), lambda a: _near(a[6, 6], RED, 0)),
    "tiny-1x1.png": Case(lambda: _save(Image.new("RGB", (1, 1), RED), "PNG"), (1, 1), lambda a: _near(a[0, 0], RED, 0)),
    "strip-1x2000.png": Case(lambda: _save(Image.new("RGB", (1, 2000), BLUE), "PNG"), (1, 2000),
                             lambda a: _near(a[1000, 0], BLUE, 0)),
    "strip-2000x1.png": Case(lambda: _save(Image.new("RGB", (2000, 1), RED), "PNG"), (2000, 1),
                             lambda a: _near(a[0, 1000], RED, 0)),
}
for _i in range(4):   # ordinary pictures, so every batch has something to learn from
    CORPUS[f"plain-{_i}.png"] = Case(lambda i=_i: _save(_noise(24, i), "PNG"), (24, 24), lambda a: True)

SKIPPED = sorted(name for name, case in CORPUS.items() if case.skip)
DECODED = sorted(name for name, case in CORPUS.items() if not case.skip)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    images = root / "images"
    images.mkdir()
    for name, case in CORPUS.items():
        (images / name).write_bytes(case.make())
    with open(root / "data.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["filepath", "title"])
        writer.writerows([f"images/{name}", f"a picture called {name}"] for name in CORPUS)
    coco = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "thing"}]}
    for index, (name, case) in enumerate(CORPUS.items(), start=1):
        width, height = case.size or (32, 32)
        coco["images"].append({"id": index, "file_name": name, "width": width, "height": height})
        coco["annotations"].append({"id": index, "image_id": index, "category_id": 1, "iscrowd": 0,
                                    "bbox": [0, 0, width, height], "area": width * height})
    (root / "boxes.json").write_text(json.dumps(coco))
    for index, name in enumerate(CORPUS):   # an ImageFolder of two classes for eval
        folder = root / "folder" / ("first" if index % 2 else "second")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes((images / name).read_bytes())
    return root


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_each_file_is_decoded_correctly_or_refused_with_its_name(corpus, name: str) -> None:
    case, path = CORPUS[name], corpus / "images" / name
    if case.skip:
        with pytest.raises(Exception) as error:
            open_image(path)
        assert type(error.value).__name__ == "ImageLoadError"
        assert str(path) in str(error.value) and case.skip in str(error.value)
        return
    image = open_image(path)
    assert image.mode == "RGB" and image.size == case.size
    assert case.check(np.asarray(image)), (name, np.asarray(image)[0, 0])


def _skip_log_names(run: Path) -> dict[str, str]:
    return {Path(file).name: reason for file, reason in read_skip_log(run / SKIP_LOG)}


def _assert_named(named: dict[str, str]) -> None:
    assert sorted(named) == SKIPPED
    for name, reason in named.items():
        assert CORPUS[name].skip in reason, (name, reason)


COMMON = ["--model", "tiny-vit-t8", "--pretrained", "synthworld", "--device", "cpu", "--num-workers", "0",
          "--batch-size", "4", "--log-every", "1", "--eval-every", "0"]


@pytest.mark.parametrize("command", [
    ["train", "--objective", "clip", "--data", "{root}/data.csv", "--steps", "6"],
    ["distill", "--data", "{root}/data.csv", "--steps", "6", "--regions", "grid", "--max-regions", "4",
     "--student-size", "64"],
    ["distill", "--data", "{root}/images", "--boxes", "{root}/boxes.json", "--steps", "6", "--regions", "boxes",
     "--max-regions", "4", "--student-size", "64"],
], ids=["train", "distill-grid", "distill-boxes"])
def test_training_commands_skip_name_and_count_broken_files(corpus, tmp_path, capsys, command: list[str]) -> None:
    run = tmp_path / "run"
    argv = [word.format(root=corpus) for word in command] + COMMON + ["--out", str(run)]
    assert main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    _assert_named(_skip_log_names(run))
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    counted = max(r.get("corrupt_samples_skipped", 0) for r in records)
    assert counted >= len(SKIPPED) and f"skipped {counted} unreadable sample(s)" in out and SKIP_LOG in out


@pytest.mark.slow   # the CLI once per corpus file: 5 to 7 s each
@pytest.mark.parametrize("command", ["segment", "classify"])
def test_single_image_commands_decode_or_refuse_each_file(corpus, tmp_path, capsys, command: str) -> None:
    for name, case in CORPUS.items():
        path = corpus / "images" / name
        extra = ["--out", str(tmp_path / f"{name}.png")] if command == "segment" else []
        code = main([command, str(path), "--classes", "red square,blue circle", "--device", "cpu", *extra])
        captured = capsys.readouterr()
        if case.skip:
            lines = captured.err.strip().splitlines()
            assert code == 2 and len(lines) == 1 and str(path) in lines[0] and case.skip in lines[0], captured.err
            continue
        assert code == 0 and captured.err.strip() == "", (name, captured.err)
        if command == "segment":
            labels = Image.open(tmp_path / f"{name}_labels.png")
            assert labels.size == case.size, name


def test_eval_names_and_counts_the_files_it_skips(corpus, tmp_path, capsys) -> None:
    out = tmp_path / "results.json"
    code = main(["eval", "--data", f"imagefolder:root={corpus / 'folder'}", "--tasks", "zeroshot", "--device", "cpu",
                 "--no-progress", "--batch-size", "4", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    results = json.loads(out.read_text())
    assert results["skipped_images"] == len(SKIPPED)
    named = {Path(text.split(": ")[0]).name for text in results["skipped_examples"]}
    assert sorted(named) == SKIPPED
    warning = [line for line in captured.err.splitlines() if "warning" in line]
    assert len(warning) == 1 and all(name in warning[0] for name in SKIPPED)
