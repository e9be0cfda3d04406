"""The page's logic without a server or Gradio: checked inputs, bounded photos, drawing at thresholds, and heads
offered by what their registered class can do (a new kind of an existing family appears with no page change)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import clipdense as cd
from clipdense.errors import ConfigError, ImageLoadError
from clipdense.heads import HEAD_KINDS, save_head
from clipdense.heads.adapters import ADAPTERS, LinearProbe, build_adapter, register_adapter
from clipdense.web import Analyser, Request, available_uses, discover_heads, parse_classes, read_photo, render
from clipdense.web.analysis import Analysis
from clipdense.web.render import heat_colours


def test_class_names_are_split_and_checked():
    assert parse_classes(" cat, dog\nsofa ,") == ["cat", "dog", "sofa"]
    for bad, message in [("", "type at least one"), (" , ", "type at least one"), ("cat, cat", "each name once"),
                         (",".join(f"c{i}" for i in range(101)), "at most 100"), ("x" * 201, "200 characters")]:
        with pytest.raises(ConfigError, match=message):
            parse_classes(bad)


def test_photos_are_bounded_and_non_images_refused(tmp_path):
    big = tmp_path / "big.png"
    Image.new("RGB", (900, 300)).save(big)
    image, notes = read_photo(big, max_side=300)
    assert image.size == (300, 100) and "resized from 900x300 to 300x100" in notes[0]
    assert read_photo(big, max_side=900)[1] == []
    text = tmp_path / "notes.jpg"
    text.write_text("no pixels here")
    with pytest.raises(ImageLoadError, match=r"^photo notes.jpg: not a readable image"):
        read_photo(text, 512)
    with pytest.raises(ConfigError, match="upload an image"):
        read_photo(None, 512)


def toy_analysis(probabilities: torch.Tensor) -> Analysis:
    height, width = probabilities.shape[1:]
    image = Image.new("RGB", (width, height), (90, 90, 90))
    heat = torch.linspace(-1, 1, height * width).reshape(height, width)
    return Analysis(image, ["cat", "dog"], probabilities, {"cat": 0.7, "dog": 0.3}, heat, "cat", model="toy")


def test_render_applies_the_background_threshold_without_recomputing():
    probabilities = torch.zeros(2, 4, 5)
    probabilities[0, :, :2], probabilities[1, :, :2] = 0.9, 0.1      # sure cat on the left two columns
    probabilities[0, :, 2:], probabilities[1, :, 2:] = 0.45, 0.55    # unsure dog on the right three
    analysis = toy_analysis(probabilities)
    plain = render(analysis, threshold=0.0)
    assert plain.overlay.size == (5, 4) and plain.heatmap.size == (5, 4)
    assert [(e["class"], e["share"]) for e in plain.legend] == [("dog", 60.0), ("cat", 40.0)]
    strict = render(analysis, threshold=0.6)
    assert [(e["class"], e["share"]) for e in strict.legend] == [("cat", 40.0), ("background", 60.0)]
    assert strict.summary["ranking"][0] == {"class": "cat", "probability": 0.7}
    assert strict.summary["heatmap"] == {"prompt": "cat", "min": -1.0, "max": 1.0}


def test_heat_colours_run_from_dark_blue_to_yellow():
    colours = heat_colours(np.array([[0.0, 1.0, 2.0, -1.0]]))
    assert colours[0, 0].tolist() == [13, 8, 135] and colours[0, 1].tolist() == [253, 231, 37]
    assert colours[0, 2].tolist() == colours[0, 1].tolist() and colours[0, 3].tolist() == colours[0, 0].tolist()


@pytest.fixture()
def new_adapter_kind():
    """A head kind the page has never heard of, of the adapter family (registered as a plug-in would be)."""
    class WebTestProbe(LinearProbe):
        method = "web-test-probe"

    register_adapter(WebTestProbe)
    yield WebTestProbe
    ADAPTERS.pop(WebTestProbe.method)
    HEAD_KINDS.pop(f"adapter/{WebTestProbe.method}")


def test_a_new_head_kind_is_offered_by_what_its_class_does(tmp_path, tiny_bundle, new_adapter_kind, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert {"segmentation", "detection", "classification"} <= set(available_uses())
    adapter = build_adapter(new_adapter_kind.method, tiny_bundle, ["red circle", "sky"])
    with torch.no_grad():
        adapter.linear.weight.zero_()
        adapter.linear.bias.copy_(torch.tensor([0.0, 5.0]))             # always 'sky'
    run = tmp_path / "runs" / "probe" / "checkpoints"
    for step in ("step-00000010", "step-00000020"):
        save_head(adapter, run / step / "head.safetensors", tiny_bundle)
    cd.save_weights(tiny_bundle.model, tmp_path / "runs" / "model.safetensors", "tiny-vit-t8")
    (choice,) = discover_heads([tmp_path / "runs"])                   # the run's latest head, not the model
    assert choice.use.name == "classification" and choice.path.parent.name == "step-00000020"
    assert choice.info.kind == "adapter/web-test-probe"
    photo = tmp_path / "photo.png"
    Image.new("RGB", (48, 40), (200, 30, 30)).save(photo)
    analyser = Analyser([choice], device="cpu")
    result = analyser(Request(photo, "red circle, sky", pretrained=None, templates="world", head=str(choice.path)))
    assert max(result.ranking, key=result.ranking.get) == "sky" and result.ranking["sky"] > 0.99
    assert result.head is not None and "adapter/web-test-probe" in result.head
    with pytest.raises(ConfigError, match="not one of the heads this page found"):
        analyser(Request(photo, "sky", pretrained=None, head=str(tmp_path / "elsewhere.safetensors")))


def test_depth_colours_by_hand():
    from clipdense.tasks.depth import depth_picture
    rgb = np.asarray(depth_picture(np.array([[1.0, 2.0, 3.0, 0.0, 9.0]]), near=1.0, far=3.0))[0]
    assert rgb.tolist() == [[253, 231, 37], [33, 145, 140], [68, 1, 84], [0, 0, 0], [68, 1, 84]]
    plain = render(toy_analysis(torch.full((2, 4, 5), 0.5)))
    assert plain.depth is None and plain.summary["depth"] is None          # an analysis without depth


def test_the_page_shows_depthclip_depth_of_the_photo(tmp_path, monkeypatch):
    from clipdense.tasks.depth import DEPTH_BINS, DepthClipConfig, depth_picture
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    photo = tmp_path / "photo.png"
    pixels = np.zeros((40, 48, 3), dtype=np.uint8)
    pixels[20:], pixels[5:15, 10:20] = (110, 90, 70), (200, 30, 30)       # ground below, a red square above
    Image.fromarray(pixels).save(photo)
    analyser = Analyser(device="cpu")
    result = analyser(Request(photo, "red circle, sky", templates="world"))
    bundle = analyser.models.bundle("tiny-vit-t8", "synthworld")
    side = bundle.dense_size or min(bundle.image_size)
    expected = cd.depth(bundle, Image.open(photo).convert("RGB"), DepthClipConfig(mode="maskclip", short_side=side))
    assert result.depth is not None and torch.allclose(result.depth, expected)   # the library's call, same mode
    view = render(result)
    assert view.depth.size == (48, 40)
    assert np.array_equal(np.asarray(view.depth), np.asarray(depth_picture(expected, min(DEPTH_BINS),
                                                                            max(DEPTH_BINS))))
    assert view.summary["depth"] == {"min": round(float(expected.min()), 3), "max": round(float(expected.max()), 3),
                                     "median": round(float(expected.median()), 3), "near": 1.0, "far": 3.0}
    assert "depth" in view.summary["seconds"]
