"""The annotation validation layer (data/validate.py) and the readers that go through it: hand-computed cases."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from clipdense.data.formats.coco import CocoPanopticRegions, CocoRegions
from clipdense.data.formats.folders import SemSegFolder
from clipdense.data.formats.nyudepth import DepthFolder, write_depth_png
from clipdense.data.skips import SKIP_LOG, SkipCounter, SkipLog, read_skip_log
from clipdense.data.validate import (EMPTY, NONFINITE, OUTSIDE, UNKNOWN_CLASS, BoxDrops, box_problem, clean_boxes,
                                     clean_semantic, coco_document, probe_label_maps, require_usable,
                                     rle_counts)
from clipdense.errors import DataError, ImageLoadError


def test_box_problem_by_hand():
    assert box_problem([1, 1, 3, 3], 4, 4) is None
    assert box_problem([3, 3, 1, 1], 4, 4) == EMPTY           # x1 < x0
    assert box_problem([1, 1, 1, 3], 4, 4) == EMPTY           # zero width
    assert box_problem([5, 0, 7, 2], 4, 4) == OUTSIDE         # right of the image
    assert box_problem([-3, -3, 0, 0], 4, 4) == OUTSIDE       # touches the corner only
    assert box_problem([0, float("nan"), 1, 1], 4, 4) == NONFINITE
    assert box_problem([-2, -2, 9, 9], 4, 4) is None          # covers the image: clipped later


def test_clean_boxes_clips_drops_counts_and_names():
    boxes = torch.tensor([[-2.0, 1, 3, 9],       # clipped to [0, 1, 3, 4]
                          [1, 1, 1, 3],          # zero width
                          [10, 10, 12, 12],      # outside the 6x4 image
                          [1, 1, 2, 2],          # label 5 of 3 classes
                          [0, 0, 6, 4]])         # the whole image
    labels = torch.tensor([0, 1, 2, 5, 2])
    masks = torch.arange(5).view(5, 1, 1).expand(5, 4, 6).clone()
    skips = SkipCounter()
    kept, kept_labels, kept_masks, drops = clean_boxes(boxes, labels, 3, 6, 4, "x.json (image a.png)", skips, masks)
    assert kept.tolist() == [[0, 1, 3, 4], [0, 0, 6, 4]]
    assert kept_labels.tolist() == [0, 2]
    assert kept_masks[:, 0, 0].tolist() == [0, 4]          # masks follow their boxes
    assert drops.total == 5 and dict(drops.reasons) == {EMPTY: 1, OUTSIDE: 1, UNKNOWN_CLASS: 1}
    assert skips.count == 3
    assert any("[10, 10, 12, 12] in a 6x4 image" in e and e.startswith("x.json (image a.png): ") for e in skips.examples)
    assert any("class index 5 of 3" in e for e in skips.examples)


def test_require_usable_one_line():
    require_usable(BoxDrops(total=0), "x.json")               # nothing to say about an empty file
    require_usable(BoxDrops(2, __import__("collections").Counter({OUTSIDE: 1})), "x.json")
    with pytest.raises(DataError, match=r"^every box in x.json lies outside its image \(2 of 2\)"):
        require_usable(BoxDrops(2, __import__("collections").Counter({OUTSIDE: 2})), "x.json")
    with pytest.raises(DataError, match=r"^no usable box in x.json: of 3, 2 lies outside its image, 1 has zero"):
        require_usable(BoxDrops(3, __import__("collections").Counter({OUTSIDE: 2, EMPTY: 1})), "x.json")


def test_clean_semantic_counts_ids_beyond_the_class_list():
    skips = SkipCounter()
    label = np.array([[0, 1, 7], [255, 2, 9]])
    out = clean_semantic(label, 3, 255, 3, 2, "l.png", skips)
    assert out.tolist() == [[0, 1, 255], [255, 2, 255]]
    assert skips.count == 1 and "2 pixel(s) with class ids beyond the 3 classes (up to 9)" in skips.examples[0]
    with pytest.raises(ImageLoadError, match="no pixel has a class id within the 3 classes"):
        clean_semantic(np.array([[7, 8]]), 3, 255, 2, 1, "l.png", skips)
    with pytest.raises(ImageLoadError, match="label map 2x1 does not match its image 3x1"):
        clean_semantic(np.array([[0, 1]]), 3, 255, 3, 1, "l.png", skips)


def test_probe_label_maps_refuses_a_class_list_that_fits_no_map():
    probe_label_maps([np.array([[0, 40]]), np.array([[255]])], 3, 255, "maps")     # one usable pixel: fine
    with pytest.raises(DataError, match=r"every class id in maps lies beyond the 3 classes \(ids up to 40\)"):
        probe_label_maps([np.array([[30, 40]]), np.array([[255, 5]])], 3, 255, "maps")


def _coco(tmp_path, annotations, images=None, categories=None, name="inst.json"):
    doc = {"images": images or [{"id": 1, "file_name": "a.png", "width": 8, "height": 6}],
           "categories": categories or [{"id": 3, "name": "cat"}, {"id": 9, "name": "dog"}],
           "annotations": annotations}
    (tmp_path / name).write_text(json.dumps(doc))
    Image.new("RGB", (8, 6)).save(tmp_path / "a.png")
    return tmp_path / name


def _ann(i, bbox, cat=3, **extra):
    return {"id": i, "image_id": 1, "category_id": cat, "bbox": bbox, "iscrowd": 0, "area": 1, **extra}


def test_coco_reader_clips_drops_and_names_in_the_skip_log(tmp_path):
    path = _coco(tmp_path, [_ann(1, [-2, -1, 4, 3]), _ann(2, [9, 0, 2, 2]), _ann(3, [1, 1, 0, 3]),
                            _ann(4, [1, 1, 2, 2], cat=77), _ann(5, [1, 1, 2, 2], cat=9), {"id": 6, "bbox": "x"}])
    skips = SkipCounter()
    reader = CocoRegions(tmp_path, path, with_masks=False, skip_counter=skips)
    assert skips.count == 4                                # ann 2 outside, 3 zero width, 4 unknown category, 6 malformed
    skips.log = SkipLog(tmp_path / SKIP_LOG)               # attached after the reader opened: the drops are written
    logged = read_skip_log(tmp_path / SKIP_LOG)
    assert [f for f, _ in logged] == [f"{path} (annotation {i})" for i in (2, 3, 4, 6)]
    assert "category_id 77 is not in 'categories'" in logged[2][1]
    sample = reader[0]
    assert sample.boxes.tolist() == [[0, 0, 2, 2], [1, 1, 3, 3]]
    assert reader.category_index.names(sample.labels) == ["cat", "dog"]


def test_coco_reader_refuses_when_nothing_is_left_and_non_coco_json(tmp_path):
    path = _coco(tmp_path, [_ann(1, [20, 20, 2, 2]), _ann(2, [-9, 0, 3, 3])])
    with pytest.raises(DataError, match=r"^every box in .*inst.json lies outside its image \(2 of 2\)"):
        CocoRegions(tmp_path, path, with_masks=False)
    for text, says in (("[1, 2]", "a JSON list"), ('{"images": []}', "no 'annotations' / 'categories' list"),
                       ("{", "not JSON"), ('{"images": [{"id": "x"}], "annotations": [], "categories": []}',
                                           "image 0 is not a dict with an integer 'id'")):
        (tmp_path / "bad.json").write_text(text)
        with pytest.raises(DataError, match=says) as info:
            CocoRegions(tmp_path, tmp_path / "bad.json")
        assert "\n" not in str(info.value)


def test_coco_document_segmentations_are_checked_only_when_masks_are_needed(tmp_path):
    good = {"size": [6, 8], "counts": [10, 38]}             # 10 + 38 = 6 x 8 runs
    path = _coco(tmp_path, [_ann(1, [0, 0, 2, 2], segmentation=[[0, 0, 2]]), _ann(2, [0, 0, 2, 2]),
                            _ann(3, [0, 0, 2, 2], segmentation={"size": [6, 8], "counts": [10, 30]}),
                            _ann(4, [0, 0, 2, 2], segmentation={"size": [6, 8], "counts": "0"}),   # cut string
                            _ann(5, [0, 0, 2, 2], segmentation=good),
                            _ann(6, [0, 0, 2, 2], segmentation=[[0, 0, 2, 0, 2, float("nan")]])])
    doc, drops = coco_document(path)
    assert len(doc["annotations"]) == 6 and drops.dropped == 0
    doc, drops = coco_document(path, segments=True)
    assert [a["id"] for a in doc["annotations"]] == [5] and drops.dropped == 5


def test_rle_counts_decode_like_pycocotools():
    from pycocotools import mask as mask_utils

    for array in (np.eye(5, dtype=np.uint8), np.ones((3, 7), np.uint8), np.zeros((4, 4), np.uint8),
                  (np.arange(60).reshape(6, 10) % 7 < 3).astype(np.uint8)):
        rle = mask_utils.encode(np.asfortranarray(array))
        counts = rle_counts(rle["counts"].decode())
        assert sum(counts) == array.size
        assert sum(counts[1::2]) == array.sum()            # runs alternate 0s and 1s, starting with 0s
    assert rle_counts("P") is None                          # a continuation bit and then the end: cut short
    assert rle_counts(chr(127)) is None                     # not a character of the encoding


def test_coco_masks_of_another_size_skip_the_image(tmp_path):
    rle = {"size": [3, 3], "counts": [0, 9]}               # the file says 3x3, the image is 8x6
    path = _coco(tmp_path, [_ann(1, [0, 0, 2, 2], segmentation=rle)],
                 images=[{"id": 1, "file_name": "a.png", "width": 3, "height": 3}])
    with pytest.raises(ImageLoadError, match="mask 3x3 does not match its image 8x6"):
        CocoRegions(tmp_path, path, with_masks=True)[0]


def test_panoptic_unknown_category_and_missing_segment_are_counted(tmp_path):
    ids = np.zeros((4, 6), np.uint8)
    ids[2:, :3] = 7
    (tmp_path / "pan").mkdir()
    Image.fromarray(np.stack([ids, 0 * ids, 0 * ids], -1)).save(tmp_path / "pan" / "a.png")
    Image.new("RGB", (6, 4)).save(tmp_path / "a.jpg")
    doc = {"images": [{"id": 1, "file_name": "a.jpg", "width": 6, "height": 4}],
           "categories": [{"id": 1, "name": "cat"}],
           "annotations": [{"image_id": 1, "file_name": "a.png", "segments_info": [
               {"id": 7, "category_id": 1, "bbox": [0, 2, 3, 2]},
               {"id": 7, "category_id": 5, "bbox": [0, 2, 3, 2]},     # category 5 is not in the list
               {"id": 8, "category_id": 1, "bbox": [0, 0, 1, 1]},     # id 8 has no pixel
               {"id": 7, "category_id": 1, "bbox": "no"}]}]}          # malformed
    (tmp_path / "pan.json").write_text(json.dumps(doc))
    skips = SkipCounter()
    sample = CocoPanopticRegions(tmp_path, tmp_path / "pan.json", tmp_path / "pan", skip_counter=skips)[0]
    assert sample.labels.tolist() == [0] and sample.boxes.tolist() == [[0, 2, 3, 4]]
    assert skips.count == 3
    (tmp_path / "pan.json").write_text(json.dumps({"images": 3}))
    with pytest.raises(DataError, match="expected a COCO panoptic JSON"):
        CocoPanopticRegions(tmp_path, tmp_path / "pan.json", tmp_path / "pan")


def test_semseg_folder_refuses_a_class_list_no_map_fits(tmp_path):
    (tmp_path / "im").mkdir()
    (tmp_path / "lb").mkdir()
    for i in range(3):
        Image.new("RGB", (4, 2)).save(tmp_path / "im" / f"{i}.png")
        Image.fromarray(np.full((2, 4), 20 + i, np.uint8)).save(tmp_path / "lb" / f"{i}.png")
    with pytest.raises(DataError, match=r"every class id in the label PNGs of .*lb lies beyond the 2 classes "
                                        r"\(ids up to 22\)"):
        SemSegFolder(tmp_path / "im", tmp_path / "lb", ["a", "b"])
    Image.fromarray(np.array([[0, 1, 20, 255]] * 2, np.uint8)).save(tmp_path / "lb" / "1.png")
    skips = SkipCounter()
    reader = SemSegFolder(tmp_path / "im", tmp_path / "lb", ["a", "b"], skip_counter=skips)
    samples = list(reader)
    assert len(samples) == 1 and samples[0].semantic.tolist() == [[0, 1, 255, 255]] * 2
    assert skips.count == 3       # two maps with no usable pixel skipped, one map's 2 pixels counted


def test_depth_map_of_another_size_is_skipped_and_counted(tmp_path):
    (tmp_path / "im").mkdir()
    (tmp_path / "d").mkdir()
    for name, size in (("a", (4, 3)), ("b", (5, 3))):
        Image.new("RGB", size).save(tmp_path / "im" / f"{name}.png")
        write_depth_png(tmp_path / "d" / f"{name}.png", np.full((3, 4), 2.0))
    (tmp_path / "d" / "c.png").write_bytes(b"not a png")
    Image.new("RGB", (4, 3)).save(tmp_path / "im" / "c.png")
    skips = SkipCounter()
    samples = list(DepthFolder(tmp_path / "im", tmp_path / "d", skip_counter=skips))
    assert [s.key for s in samples] == ["a"] and skips.count == 2
    assert any("depth map 4x3 does not match its image 5x3" in e for e in skips.examples)


# --- the newer readers through the same layer (grounding spans, sounds, shapes) ---------------------------------

def _grounding_file(tmp_path, annotations, caption="a red circle left of two blue stars"):
    (tmp_path / "images").mkdir(exist_ok=True)
    Image.new("RGB", (40, 30)).save(tmp_path / "images" / "a.png")
    doc = {"images": [{"id": 7, "file_name": "a.png", "width": 40, "height": 30, "caption": caption}],
           "annotations": [{"id": i + 1, "image_id": 7, **a} if isinstance(a, dict) else a
                           for i, a in enumerate(annotations)],
           "categories": [{"id": 1, "name": "object"}]}
    (tmp_path / "g.json").write_text(json.dumps(doc))
    return tmp_path / "g.json"


def test_grounding_annotations_are_dropped_counted_and_named(tmp_path):
    from clipdense.data.formats.grounding import ModulatedCoco

    path = _grounding_file(tmp_path, [
        {"bbox": [1, 2, 10, 5], "tokens_positive": [[0, 12]], "phrase_ids": 0},      # kept
        {"bbox": [5, 5, 4, 4], "tokens_positive": [[21, 99]], "phrase_ids": 1},      # span beyond the 35 characters
        {"bbox": "no", "tokens_positive": [[21, 35]], "phrase_ids": 1},              # malformed bbox
        {"bbox": [5, 5, 4, 4], "tokens_positive": [], "phrase_ids": 1},              # no span
        ["not", "a", "dict"],
        {"bbox": [39.5, 3, 4, 4], "tokens_positive": [[0, 12]], "phrase_ids": 0},    # half a pixel once clipped
        {"bbox": [50, 3, 4, 4], "tokens_positive": [[0, 12]], "phrase_ids": 0}])     # outside the 40x30 image
    skips = SkipCounter()
    reader = ModulatedCoco(tmp_path / "images", path, skip_counter=skips)
    assert skips.count == 4   # at open: the span, the bbox, the empty span list, the non-dict
    sample = reader[0]
    assert sample.boxes.tolist() == [[1, 2, 11, 7]] and sample.phrases.box_phrase.tolist() == [0]
    assert skips.count == 6   # and the two boxes of the sample, each named with its reason
    text = "\n".join(skips.examples)
    assert "annotation 2: span [21, 99] is outside the caption (35 characters" in text
    assert "annotation 3: expected 'bbox' [x, y, w, h]; dropped" in text and "annotation 4: tokens_positive []" in text
    assert "box is thinner than its minimum size once clipped ([39.5, 3, 43.5, 7] in a 40x30 image, minimum 1 px)" \
        in text and "box lies outside its image ([50, 3, 54, 7] in a 40x30 image)" in text


def test_a_grounding_file_with_nothing_usable_is_one_line(tmp_path):
    from clipdense.data.formats.grounding import ModulatedCoco

    path = _grounding_file(tmp_path, [{"bbox": [1, 2, 3, 4], "tokens_positive": [[30, 40]]},
                                      {"bbox": [1, 2, 3, 4], "tokens_positive": [["a", 2]]}], caption="a cat")
    with pytest.raises(DataError) as info:
        ModulatedCoco(tmp_path / "images", path)
    assert str(info.value) == (f"no usable box in {path}: of 2, 1 is malformed, 1 has a phrase span outside its "
                               "caption; first: annotation 1: span [30, 40] is outside the caption (5 characters: "
                               "'a cat')")


def _esc50(root, rows):
    (root / "meta").mkdir(parents=True)
    (root / "meta" / "esc50.csv").write_text("filename,fold,target,category\n" + "".join(f"{r}\n" for r in rows))
    return root


def test_sound_metadata_rows_are_dropped_counted_and_named(tmp_path):
    from clipdense.data.formats.audio import open_esc50

    root = _esc50(tmp_path / "esc", ["1-a.wav,1,0,dog", "1-b.wav,1,x,dog", "1-c.wav,0,1,rain", ",2,1,rain",
                                     "1-d.wav,2,1,rain"])
    skips = SkipCounter()
    reader = open_esc50(root, skip_counter=skips)
    assert [c.path.name for c in reader.clips] == ["1-a.wav", "1-d.wav"] and reader.classes == ["dog", "rain"]
    assert skips.count == 3 and reader.skips is skips
    assert any("line 3: target 'x' is not an integer; row dropped" in e for e in skips.examples)
    assert any("line 4: fold 0 is below 1; row dropped" in e for e in skips.examples)
    bad = _esc50(tmp_path / "bad", ["a.wav,x,0,dog", "b.wav,1,-3,dog"])
    with pytest.raises(DataError, match=r"every row in .*esc50.csv is malformed \(2 of 2\); nothing usable is left; "
                                        r"first: .*fold 'x' is not an integer"):
        open_esc50(bad)


def test_a_sound_with_non_finite_samples_is_a_named_skip(tmp_path):
    import soundfile as sf

    from clipdense.data.audio import read_audio

    samples = np.zeros(800, np.float32)
    samples[[3, 9]] = [np.nan, np.inf]
    sf.write(str(tmp_path / "n.wav"), samples, 8000, subtype="FLOAT")
    with pytest.raises(ImageLoadError, match=r"n.wav: sound with 2 non-finite sample\(s\) of 800"):
        read_audio(tmp_path / "n.wav")


def test_shapes_of_unknown_classes_and_broken_files_are_named_skips(tmp_path):
    from clipdense.data.formats.modelnet import ModelNetPoints

    root = tmp_path / "mn"
    (root / "cup").mkdir(parents=True)
    (root / "m_shape_names.txt").write_text("cup\n")
    (root / "m_train.txt").write_text("cup_0001\nchair_0001\ncup_0002\n")
    (root / "cup" / "cup_0001.txt").write_text("0,0,0\n1,0,0\n")
    (root / "cup" / "cup_0002.txt").write_text("0,0,nan\n1,0,0\n")
    skips = SkipCounter()
    reader = ModelNetPoints(root, "train", skip_counter=skips)
    assert len(reader) == 2 and skips.count == 1
    assert "shape chair_0001 of class 'chair', not in m_shape_names.txt; dropped" in skips.examples[0]
    assert reader[0].points.shape == (2, 3)
    with pytest.raises(ImageLoadError, match=r"cup_0002.txt: the point cloud holds NaN or infinite coordinates"):
        reader[1]   # a skip (counted by every caller), not the end of a run
    (root / "m_train.txt").write_text("chair_0001\n")
    with pytest.raises(DataError, match=r"every shape in .*m_train.txt has a category not in the class list"):
        ModelNetPoints(root, "train")
