"""The page's HTTP API on a real server (loopback, free port, closed after the module): an image and class
names in, the overlay (at the photo's size) and its legend out; bad input answered with a message; heads
offered by what their registered class can do; `clipdense serve --exit-after` stopping by itself."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch
from PIL import Image

pytest.importorskip("gradio", reason="the page needs the web extra: pip install 'clipdense[web]'")
pytestmark = pytest.mark.slow   # every test talks to a served page (test_web_page.py is the page without a server)

import clipdense as cd  # noqa: E402
from clipdense.heads import save_head  # noqa: E402
from clipdense.heads.detection import DetectorConfig, FViTDetector  # noqa: E402
from clipdense.tasks.detect import detect  # noqa: E402
from clipdense.web import discover_heads  # noqa: E402
from clipdense.web.app import PageSettings  # noqa: E402
from clipdense.web.examples import world_examples  # noqa: E402

from web_client import PageClient, free_port, running, wait_until_up  # noqa: E402

SMALL = dict(fpn_channels=16, head_channels=16, fc_channels=32, rpn_post_nms_test=50, roi_batch=32, rpn_batch=32)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("web")


@pytest.fixture(scope="module")
def photo(folder) -> tuple[Path, str]:
    """A world scene cropped to 128 x 96 (not square, so a transposed overlay would show) and its classes."""
    path, classes = world_examples(1, folder=folder)[0]
    out = folder / "scene.png"
    Image.open(path).crop((0, 0, 128, 96)).save(out)
    return out, classes


@pytest.fixture(scope="module")
def heads(folder) -> Path:
    """An (untrained) F-ViT detector head on random-init tiny-vit-t8 weights, and a non-head file beside it."""
    bundle = cd.load_model("tiny-vit-t8", device="cpu")
    torch.manual_seed(0)
    detector = FViTDetector(bundle, DetectorConfig(image_size=64, **SMALL), ["red circle"])
    save_head(detector, folder / "heads" / "fvit.safetensors", bundle)
    cd.save_weights(bundle.model, folder / "heads" / "model.safetensors", "tiny-vit-t8")
    return folder / "heads"


@pytest.fixture(scope="module")
def page(heads, folder):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(folder / "cache"))
        settings = PageSettings(templates="world", max_side=256, heads=discover_heads([heads]), examples=2)
        with running(settings) as base:
            yield PageClient(base), settings


def test_overlay_has_the_photo_size_and_a_legend_of_the_named_classes(page, photo):
    client, _ = page
    path, classes = photo
    out = client.analyse(path, classes)
    overlay = client.image(out["overlay"])
    assert overlay.size == (128, 96)
    assert client.image(out["heatmap"]).size == (128, 96)
    assert client.image(out["depth"]).size == (128, 96)                   # DepthCLIP's map of the photo
    assert 1.0 <= out["summary"]["depth"]["min"] <= out["summary"]["depth"]["max"] <= 3.0   # within its bins
    names = [name.strip() for name in classes.split(",")]
    legend = out["summary"]["legend"]
    assert legend and {entry["class"] for entry in legend} <= set(names)
    assert sum(entry["share"] for entry in legend) == pytest.approx(100, abs=0.1)
    assert all(entry["colour"].startswith("#") and entry["colour"] in out["legend"] for entry in legend)
    assert out["summary"]["image"] == {"width": 128, "height": 96}
    assert out["message"].startswith("**tiny-vit-t8 (synthworld)**")
    assert {c["label"] for c in out["ranking"]["confidences"]} == set(names)


def test_background_threshold_turns_unsure_pixels_into_background(page, photo):
    client, _ = page
    shares = {}
    for threshold in (0.0, 0.9):
        legend = client.analyse(photo[0], photo[1], threshold=threshold)["summary"]["legend"]
        shares[threshold] = {entry["class"]: entry["share"] for entry in legend}
        assert sum(shares[threshold].values()) == pytest.approx(100, abs=0.1)
    assert "background" not in shares[0.0] and shares[0.9]["background"] > 0
    assert all(share <= shares[0.0][name] for name, share in shares[0.9].items() if name != "background")


@pytest.mark.parametrize("classes,upload,expected", [
    (" , ,", "photo", "class names: type at least one"),
    ("sky, sky", "photo", "each name once"),
    ("sky", "text", "not a readable image"),
    ("sky", None, "upload an image"),
])
def test_bad_input_is_a_message_not_a_trace(page, photo, folder, classes, upload, expected):
    client, _ = page
    text = folder / "notes.png"
    text.write_text("this is not a picture")
    out = client.analyse({"photo": photo[0], "text": text, None: None}[upload], classes)
    assert out["message"].startswith("**Error:**") and expected in out["message"]
    assert "Traceback" not in out["message"] and out["overlay"] is None


def test_a_huge_photo_is_bounded(page, folder):
    client, settings = page
    wide = folder / "wide.png"
    Image.new("RGB", (1024, 200), (30, 120, 200)).save(wide)
    out = client.analyse(wide, "sky, grass")
    assert client.image(out["overlay"]).size == (256, 50)
    assert "resized from 1024x200 to 256x50" in out["message"]


def test_a_head_for_another_backbone_is_refused_on_the_page(page, photo):
    client, settings = page
    (choice,) = settings.heads          # the model file beside the head is not offered
    out = client.analyse(photo[0], "red circle, sky", head=str(choice.path))      # page model: synthworld weights
    assert out["message"].startswith("**Error:**") and "trained on 'tiny-vit-t8'" in out["message"]


def test_a_detector_head_draws_scored_boxes(page, photo):
    client, settings = page
    (choice,) = settings.heads
    assert choice.use.name == "detection"
    out = client.analyse(photo[0], "red circle, sky", head=str(choice.path), pretrained="", min_score=0.0)
    assert client.image(out["overlay"]).size == (128, 96)
    rows = out["summary"]["detections"]
    assert rows, "an untrained detector still proposes boxes at min_score 0"
    for row in rows:   # xyxy pixels of the 128 x 96 photo, not of the detector's input or a transposed one
        x0, y0, x1, y1 = row["box"]
        assert 0 <= x0 < x1 <= 128 and 0 <= y0 < y1 <= 96, row
    # the known boxes: the same head on the same (seeded random-init) backbone, called directly on the photo
    bundle = cd.load_model("tiny-vit-t8", device="cpu")
    known = detect(bundle, photo[0], ["red circle", "sky"], head=cd.load_head(choice.path, bundle))
    assert [row["class"] for row in rows] == known.names
    assert [row["score"] for row in rows] == pytest.approx(known.scores.tolist(), abs=1e-4)
    for row, box in zip(rows, known.boxes.tolist()):
        assert row["box"] == pytest.approx(box, abs=0.051), (row, box)   # the page rounds to 0.1 pixel
    assert out["detections"]["data"][0][:2] == [rows[0]["class"], rows[0]["score"]]


def test_serve_command_answers_then_stops_by_itself(tmp_path, monkeypatch):
    from clipdense.cli.main import main
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    port = free_port()
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(main(["serve", "--port", str(port), "--exit-after", "4",
                                                                 "--examples", "0"])))
    thread.start()
    wait_until_up(f"http://127.0.0.1:{port}/")
    thread.join(timeout=60)
    assert not thread.is_alive() and result == [0]
