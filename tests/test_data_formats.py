"""Hand-made fixtures in real formats (as users have them), built in code: COCO with polygon + RLE
masks and crowd, a panoptic pair, an ADE20K-style folder with reduce_zero_label, a VOC palette label."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from clipdense.data import CocoPanopticRegions, CocoRegions, SemSegFolder, SkipCounter
from clipdense.errors import DataError


@pytest.fixture()
def coco(tmp_path):
    images = tmp_path / "val2017"
    images.mkdir()
    for i in (1, 2, 3):
        Image.new("RGB", (40, 30), (i * 50, 0, 0)).save(images / f"{i:012d}.jpg")
    (images / f"{3:012d}.jpg").write_bytes(b"")  # a corrupt image among the three
    rle_mask = np.zeros((30, 40), np.uint8)
    rle_mask[5:15, 20:30] = 1
    rle = mask_utils.encode(np.asfortranarray(rle_mask))
    rle["counts"] = rle["counts"].decode()
    doc = {
        "images": [{"id": i, "file_name": f"{i:012d}.jpg", "width": 40, "height": 30} for i in (1, 2, 3)],
        "categories": [{"id": 1, "name": "person", "supercategory": "person"},
                       {"id": 18, "name": "dog", "supercategory": "animal"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 3, 10, 10], "area": 100, "iscrowd": 0,
             "segmentation": [[2, 3, 12, 3, 12, 13, 2, 13]]},
            {"id": 2, "image_id": 1, "category_id": 18, "bbox": [20, 5, 10, 10], "area": 100, "iscrowd": 0,
             "segmentation": rle},
            {"id": 3, "image_id": 2, "category_id": 1, "bbox": [0, 0, 40, 30], "area": 1200, "iscrowd": 1,
             "segmentation": rle},
        ]}
    stuff = {"images": doc["images"], "categories": [{"id": 149, "name": "grass", "supercategory": "plant"}],
             "annotations": [{"id": 9, "image_id": 2, "category_id": 149, "bbox": [0, 20, 40, 10], "area": 400,
                              "iscrowd": 0, "segmentation": [[0, 20, 40, 20, 40, 30, 0, 30]]}]}
    (tmp_path / "instances.json").write_text(json.dumps(doc))
    (tmp_path / "stuff.json").write_text(json.dumps(stuff))
    return tmp_path


def test_coco_polygon_and_rle_masks_with_stuff_and_skipped_image(coco):
    counter = SkipCounter()
    ds = CocoRegions(coco / "val2017", coco / "instances.json", coco / "stuff.json", skip_counter=counter)
    samples = list(ds)
    assert len(samples) == 2 and counter.count == 1 and "empty" in counter.examples[0]
    first, second = samples
    names = ds.category_index.names
    assert ds.classes == ["person", "dog", "grass"]                      # sorted by category id: 1, 18, 149
    assert names(first.labels) == ["person", "dog"] and ds.isthing[first.labels].tolist() == [True, True]
    assert first.boxes.tolist() == [[2, 3, 12, 13], [20, 5, 30, 15]]
    assert first.masks.shape == (2, 30, 40) and int(first.masks[1].sum()) == 100
    ys, xs = np.nonzero(first.masks[0].numpy())  # polygon rasterised inside its box
    assert xs.min() >= 2 and xs.max() <= 12 and ys.min() >= 3 and ys.max() <= 13
    assert names(second.labels) == ["grass"] and ds.isthing[second.labels].tolist() == [False]  # crowd left out
    with_crowd = CocoRegions(coco / "val2017", coco / "instances.json", include_crowd=True, with_masks=False)
    crowd = with_crowd[1]
    assert with_crowd.category_index.names(crowd.labels) == ["person"] and crowd.masks is None


def test_coco_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="no such COCO annotation file"):
        CocoRegions(tmp_path, tmp_path / "none.json")
    (tmp_path / "bad.json").write_text(json.dumps({"images": []}))
    with pytest.raises(DataError, match="bad.json"):
        CocoPanopticRegions(tmp_path, tmp_path / "bad.json", tmp_path)


def test_panoptic_pair_gives_thing_and_stuff_masks(tmp_path):
    Image.new("RGB", (6, 4)).save(tmp_path / "a.jpg")
    ids = np.zeros((4, 6), np.uint32)
    ids[:2] = 300  # a stuff segment whose id needs two bytes (300 = 44 + 256 * 1)
    ids[2:, :3] = 7
    rgb = np.stack([ids % 256, ids // 256, ids // 65536], -1).astype(np.uint8)
    (tmp_path / "pan").mkdir()
    Image.fromarray(rgb).save(tmp_path / "pan" / "a.png")
    doc = {"images": [{"id": 1, "file_name": "a.jpg", "width": 6, "height": 4}],
           "categories": [{"id": 1, "name": "cat", "isthing": 1}, {"id": 200, "name": "sky", "isthing": 0}],
           "annotations": [{"image_id": 1, "file_name": "a.png", "segments_info": [
               {"id": 7, "category_id": 1, "bbox": [0, 2, 3, 2], "area": 6, "iscrowd": 0},
               {"id": 300, "category_id": 200, "bbox": [0, 0, 6, 2], "area": 12, "iscrowd": 0}]}]}
    (tmp_path / "pan.json").write_text(json.dumps(doc))
    reader = CocoPanopticRegions(tmp_path, tmp_path / "pan.json", tmp_path / "pan")
    sample = reader[0]
    assert reader.category_index.names(sample.labels) == ["cat", "sky"]
    assert reader.isthing[sample.labels].tolist() == [True, False]
    assert sample.masks.sum((1, 2)).tolist() == [6, 12]
    assert sample.boxes.tolist() == [[0, 2, 3, 4], [0, 0, 6, 2]]


def test_ade_style_folder_reduce_zero_label_and_ignore(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "annotations").mkdir()
    (tmp_path / "classes.txt").write_text("wall\nfloor\n\n")
    Image.new("RGB", (4, 2)).save(tmp_path / "images" / "ADE_val_1.jpg")
    Image.new("RGB", (4, 2)).save(tmp_path / "images" / "ADE_val_2.jpg")  # no label: not listed
    Image.new("RGB", (5, 2)).save(tmp_path / "images" / "ADE_val_3.jpg")  # size mismatch: skipped
    Image.fromarray(np.array([[0, 1, 2, 9], [2, 2, 1, 0]], np.uint8)).save(tmp_path / "annotations" / "ADE_val_1.png")
    Image.fromarray(np.zeros((2, 4), np.uint8)).save(tmp_path / "annotations" / "ADE_val_3.png")
    counter = SkipCounter()
    ds = SemSegFolder(tmp_path / "images", tmp_path / "annotations", tmp_path / "classes.txt",
                      reduce_zero_label=True, skip_counter=counter)
    assert ds.classes == ["wall", "floor"] and len(ds) == 2
    samples = list(ds)
    assert len(samples) == 1 and counter.count == 2     # label 9 (8 after the offset) of 2 classes, counted
    assert "does not match" in counter.examples[1] and "beyond the 2 classes (up to 8)" in counter.examples[0]
    assert samples[0].semantic.tolist() == [[255, 0, 1, 255], [1, 1, 0, 255]]


def test_voc_palette_labels_keep_indices_and_255(tmp_path):
    (tmp_path / "JPEGImages").mkdir()
    (tmp_path / "SegmentationClass").mkdir()
    Image.new("RGB", (3, 1)).save(tmp_path / "JPEGImages" / "x.jpg")
    label = Image.frombytes("P", (3, 1), bytes([0, 15, 255]))
    label.putpalette([128] * 768)
    label.save(tmp_path / "SegmentationClass" / "x.png")
    names = ["background"] + [f"c{i}" for i in range(1, 21)]
    sample = SemSegFolder(tmp_path / "JPEGImages", tmp_path / "SegmentationClass", names)[0]
    assert sample.semantic.tolist() == [[0, 15, 255]]
    with pytest.raises(DataError, match="no image has a label"):
        SemSegFolder(tmp_path / "SegmentationClass", tmp_path / "JPEGImages", names)
