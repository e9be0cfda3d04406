"""Corrupt and unusual image files: decoded correctly, or rejected with ImageLoadError (never a crash)."""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from clipdense.data import ImageFolderDataset, SkipCounter, decode_image, open_image
from clipdense.errors import ImageLoadError


def _jpeg(colour=(200, 30, 30), size=(32, 24), **kw) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "JPEG", **kw)
    return buffer.getvalue()


def _huge_png_header(width: int, height: int) -> bytes:
    """A valid PNG signature + IHDR claiming a huge size: the bomb check must fire before decoding."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


@pytest.mark.parametrize("name,data,match", [
    ("zero.png", b"", "empty file"),
    ("notes.jpg", b"this is a text file, not a picture", "not a readable image"),
    ("trunc.jpg", _jpeg(size=(64, 64))[:200], "corrupt or truncated"),
    ("bomb.png", _huge_png_header(9000, 8000), "exceeds the 64000000 pixel limit"),
    ("bigger_bomb.png", _huge_png_header(20000, 20000), "exceeds the pixel limit"),
])
def test_bad_files_raise_image_load_error(tmp_path, name, data, match):
    (tmp_path / name).write_bytes(data)
    with pytest.raises(ImageLoadError, match=match) as info:
        open_image(tmp_path / name)
    assert name in str(info.value)
    with pytest.raises(ImageLoadError, match=match):
        decode_image(data, name)


def test_missing_file(tmp_path):
    with pytest.raises(ImageLoadError, match="no such image"):
        open_image(tmp_path / "absent.png")


def test_cmyk_grey_palette_16bit_and_alpha_become_rgb(tmp_path):
    Image.new("CMYK", (4, 4), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    Image.new("L", (4, 4), 77).save(tmp_path / "grey.png")
    palette = Image.new("P", (4, 4), 1)
    palette.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    palette.save(tmp_path / "pal.png")
    Image.fromarray(np.full((4, 4), 65535, np.uint16)).save(tmp_path / "deep.png")
    Image.new("RGBA", (4, 4), (0, 0, 255, 0)).save(tmp_path / "clear.png")
    expected = {"cmyk.jpg": (255, 0, 0), "grey.png": (77, 77, 77), "pal.png": (10, 200, 30),
                "deep.png": (255, 255, 255), "clear.png": (255, 255, 255)}
    for name, rgb in expected.items():
        image = open_image(tmp_path / name)
        assert image.mode == "RGB" and image.size == (4, 4)
        assert np.abs(np.asarray(image)[1, 1].astype(int) - rgb).max() <= 3, name


def test_exif_orientation_is_applied(tmp_path):
    array = np.zeros((10, 30, 3), np.uint8)
    array[:, :10] = (255, 0, 0)  # red on the left before rotation
    image = Image.fromarray(array)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    image.save(tmp_path / "rot.jpg", exif=exif, quality=95)
    shown = np.asarray(open_image(tmp_path / "rot.jpg"))
    assert shown.shape == (30, 10, 3)
    assert shown[2, 5, 0] > 200 and shown[-2, 5, 0] < 60  # the red band is now at the top


def test_imagefolder_skips_and_counts_unreadable_files(tmp_path):
    for cls in ("red circle", "blue star"):
        (tmp_path / cls).mkdir()
        (tmp_path / cls / "a.jpg").write_bytes(_jpeg())
    (tmp_path / "blue star" / "broken.jpg").write_bytes(_jpeg()[:100])
    (tmp_path / "blue star" / "empty.png").write_bytes(b"")
    (tmp_path / "blue star" / "readme.txt").write_text("ignored: not an image suffix")
    counter = SkipCounter()
    folder = ImageFolderDataset(tmp_path, skip_counter=counter)
    assert folder.classes == ["blue star", "red circle"] and len(folder) == 4
    labels = [sample.image_label for sample in folder]
    assert sorted(labels) == [0, 1] and counter.count == 2
