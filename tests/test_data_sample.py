"""The Sample contract: geometric transforms move boxes and masks with the pixels (hand-computed cases),
--data specs parse every form, and readers are chosen by the fields a consumer needs."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from clipdense.data import DataSpec, parse_data, provided_fields, resolve_reader
from clipdense.data.readers import open_reader
from clipdense.data.sample import Sample
from clipdense.data.transforms import (Compose, Letterbox, RandomHFlip, RandomResizedCrop, ScaleJitter, crop, hflip,
                                       letterbox_fit, resize)
from clipdense.errors import DataError


def _sample() -> Sample:
    """A 10 x 8 (W x H) image whose pixel (x, y) has red = 10x + y, two boxes with masks, a label map."""
    pixels = np.zeros((8, 10, 3), np.uint8)
    for y in range(8):
        for x in range(10):
            pixels[y, x, 0] = 10 * x + y
    boxes = torch.tensor([[1.0, 1.0, 4.0, 3.0], [6.0, 4.0, 10.0, 8.0]])
    masks = torch.zeros(2, 8, 10, dtype=torch.bool)
    masks[0, 1:3, 1:4] = True
    masks[1, 4:8, 6:10] = True
    semantic = masks[1].long() * 2 + masks[0].long()
    return Sample(Image.fromarray(pixels), "s", caption="c", boxes=boxes, labels=torch.tensor([3, 5]), masks=masks,
                  semantic=semantic)


def test_hflip_mirrors_boxes_masks_and_labels() -> None:
    out = hflip(_sample())
    assert out.boxes.tolist() == [[6.0, 1.0, 9.0, 3.0], [0.0, 4.0, 4.0, 8.0]]
    assert np.asarray(out.image)[0, 0, 0] == 90           # old x = 9, y = 0
    assert out.masks[0, 1:3, 6:9].all() and int(out.masks[0].sum()) == 6
    assert out.semantic[5, 0] == 2 and out.semantic[5, 9] == 0
    ys, xs = np.nonzero(out.masks[1].numpy())
    assert [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] == out.boxes[1].tolist()


def test_crop_shifts_clips_and_drops_boxes() -> None:
    out = crop(_sample(), top=2, left=3, height=4, width=5)          # window x 3..8, y 2..6
    # box 0 (1,1)-(4,3) -> (0,0)-(1,1): one pixel wide, kept; box 1 (6,4)-(10,8) -> (3,2)-(5,4)
    assert out.boxes.tolist() == [[0.0, 0.0, 1.0, 1.0], [3.0, 2.0, 5.0, 4.0]]
    assert out.labels.tolist() == [3, 5] and out.masks.shape == (2, 4, 5) and out.semantic.shape == (4, 5)
    assert np.asarray(out.image)[0, 0, 0] == 32           # old (x=3, y=2)
    dropped = crop(_sample(), top=3, left=5, height=5, width=5)      # box 0 lies up-left of the window
    assert dropped.boxes.tolist() == [[1.0, 1.0, 5.0, 5.0]] and dropped.labels.tolist() == [5]
    assert dropped.masks.shape == (1, 5, 5) and bool(dropped.masks[0, 1:5, 1:5].all())


def test_crop_drops_a_box_that_only_touches_the_window_edge() -> None:
    out = crop(_sample(), top=0, left=4, height=8, width=2)          # x 4..6: box 0 ends at 4, box 1 starts at 6
    assert len(out.boxes) == 0 and out.labels.shape == (0,) and out.masks.shape == (0, 8, 2)


def test_resize_scales_boxes_and_keeps_label_values() -> None:
    out = resize(_sample(), (16, 20))                               # x2 both ways
    assert out.image.size == (20, 16)
    assert out.boxes.tolist() == [[2.0, 2.0, 8.0, 6.0], [12.0, 8.0, 20.0, 16.0]]
    assert int(out.masks[0].sum()) == 4 * 6 and set(out.semantic.unique().tolist()) == {0, 1, 2}
    squash = resize(_sample(), (4, 5))
    assert squash.boxes.tolist() == [[0.5, 0.5, 2.0, 1.5], [3.0, 2.0, 5.0, 4.0]]


def test_letterbox_scales_by_the_longest_side_and_pads_bottom_right() -> None:
    out = Letterbox(20)(_sample())                                  # 10 x 8 -> 20 x 16 picture on a 20 x 20 canvas
    assert out.image.size == (20, 20)
    assert out.boxes.tolist() == [[2.0, 2.0, 8.0, 6.0], [12.0, 8.0, 20.0, 16.0]]
    pixels = np.asarray(out.image)
    assert (pixels[16:] == 0).all() and pixels[15, 19, 0] > 0     # rows 16..19 are black padding
    assert out.masks.shape == (2, 20, 20) and not out.masks[:, 16:].any() and int(out.masks[0].sum()) == 4 * 6
    assert (out.semantic[16:] == 255).all() and set(out.semantic[:16].unique().tolist()) == {0, 1, 2}
    ys, xs = np.nonzero(out.masks[1].numpy())
    assert [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] == out.boxes[1].tolist()
    tall = Letterbox(5)(Sample(Image.new("RGB", (3, 10)), "t", boxes=torch.tensor([[0.0, 0.0, 3.0, 10.0]])))
    assert tall.image.size == (5, 5) and tall.boxes.tolist() == [[0.0, 0.0, 1.5, 5.0]]   # exact scale 1/2
    assert letterbox_fit(3, 10, (5, 5)) == (0.5, 2, 5) and letterbox_fit(60, 20, (4, 6)) == (0.1, 6, 2)


def test_random_ops_are_reproducible_from_the_generator() -> None:
    ops = Compose([ScaleJitter(12, (0.5, 2.0)), RandomHFlip(0.5), RandomResizedCrop(8, (0.5, 1.0))])
    a = ops(_sample(), torch.Generator().manual_seed(4))
    b = ops(_sample(), torch.Generator().manual_seed(4))
    assert a.image.size == (8, 8) and torch.equal(a.boxes, b.boxes) and torch.equal(a.masks, b.masks)
    assert len(a.boxes) == len(a.labels) == len(a.masks)
    if len(a.boxes):
        assert (a.boxes >= 0).all() and (a.boxes <= 8).all()
        assert ((a.boxes[:, 2:] - a.boxes[:, :2]) >= 1).all()


def test_scale_jitter_keeps_aspect_and_bounds_the_size() -> None:
    for seed in range(10):
        out = ScaleJitter(6, (1.0, 1.0))(_sample(), torch.Generator().manual_seed(seed))
        assert out.image.size == (6, 5)                             # 10x8 fit to 6 -> 6x4.8 -> 6x5


def test_sample_fields() -> None:
    assert _sample().fields() == {"caption", "boxes", "labels", "masks", "semantic"}
    assert Sample(Image.new("RGB", (2, 2)), "k").fields() == frozenset()


def test_data_spec_forms(tmp_path) -> None:
    (tmp_path / "a.csv").write_text("filepath,title\n")
    assert parse_data(str(tmp_path / "a.csv")).format == "csv"
    assert parse_data("shards-{000..002}.tar").format == "wds"
    spec = parse_data("coco:images=/x/img,annotations=/x/inst.json")
    assert spec == DataSpec("coco", {"images": "/x/img", "annotations": "/x/inst.json"}, spec.text)
    semseg = parse_data("semseg:images=i,labels=l,classes=c.txt,ignore_index=0,reduce_zero_label=true")
    assert semseg.get("ignore_index") == 0 and semseg.get("reduce_zero_label") is True
    assert parse_data("imagefolder:/data/train").get("root") == "/data/train"
    (tmp_path / "d.yaml").write_text("format: coco\nimages: img\nannotations: /abs/i.json\n")
    yaml_spec = parse_data(str(tmp_path / "d.yaml"))
    assert yaml_spec.get("images") == str(tmp_path / "img") and yaml_spec.get("annotations") == "/abs/i.json"


@pytest.mark.parametrize("text, message", [
    ("coco:images=/x", "missing ['annotations']"),
    ("coco:images=/x,annotations=a.json,colour=red", "unknown key(s) ['colour']"),
    ("semseg:/x", "expected key=value pairs"),
    ("/no/such/place", "no such file or folder"),
    ("", "--data is required"),
])
def test_data_spec_errors_are_one_line(text: str, message: str) -> None:
    with pytest.raises(DataError) as info:
        parse_data(text)
    assert message in str(info.value) and "\n" not in str(info.value)


def _coco_folder(tmp_path):
    images = tmp_path / "img"
    images.mkdir()
    for i in (1, 2):
        Image.new("RGB", (20, 10), (i * 50, 0, 0)).save(images / f"{i}.png")
    doc = {"images": [{"id": i, "file_name": f"{i}.png", "width": 20, "height": 10} for i in (1, 2)],
           "categories": [{"id": 7, "name": "cat"}, {"id": 3, "name": "dog"}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [1, 1, 5, 5], "area": 25,
                            "iscrowd": 0, "segmentation": [[1, 1, 6, 1, 6, 6, 1, 6]]}]}
    (tmp_path / "inst.json").write_text(json.dumps(doc))
    return f"coco:images={images},annotations={tmp_path / 'inst.json'}"


def test_readers_are_chosen_by_needed_fields(tmp_path) -> None:
    coco = _coco_folder(tmp_path)
    assert provided_fields(coco) == {"boxes", "labels", "masks"}
    reader, kind = open_reader(coco, {"boxes"})
    sample = reader[0]
    assert not kind.streaming and reader.classes == ["dog", "cat"]      # sorted by category id 3, 7
    assert sample.boxes.tolist() == [[1.0, 1.0, 6.0, 6.0]] and sample.labels.tolist() == [1]
    assert sample.masks is None                                            # masks only when needed
    assert open_reader(coco, {"masks"})[0][0].masks.shape == (1, 10, 20)
    assert reader.has_boxes(0) and not reader.has_boxes(1)
    with pytest.raises(DataError, match=r"clip needs caption; --data coco:.* has boxes, labels, masks"):
        resolve_reader(coco, {"caption"}, who="clip")
