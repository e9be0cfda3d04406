"""Issue 27 (OV-LVIS): LVIS's frequency buckets, the LVIS v1 reader on a hand-written file, and the long-tailed
world written as LVIS v1 JSON, checked with the official `lvis` API (a perfect detector scores AP 1.0)."""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clipdense.cli.main import main
from clipdense.data.formats.lvis import LvisRegions, class_word, frequency_of, image_path
from clipdense.data.readers import open_data
from clipdense.data.skips import SkipCounter
from clipdense.data.world.lvis import (LvisWorldConfig, category_ids, encode_lvis_scene, plan_world,
                                       write_lvis_world)
from clipdense.data.world.scenes import SynthConfig
from clipdense.errors import ConfigError, DataError
from clipdense.evaluation.lvis_ap import lvis_ap

pytest.importorskip("lvis")

#: a long tail small enough for the fast tier: 2 frequent classes need > 100 training images
SMALL = LvisWorldConfig(train=130, val=16, classes=7, frequent=2, common=2, frequent_images=[122, 128],
                        common_images=[15, 40], rare_images=[2, 6], negatives=3, duplicate_fraction=0.4)
WORLD = SynthConfig(image_size=40, seed=3, min_scale=0.25, max_scale=0.6)


def test_frequency_buckets_are_lvis_ones():
    assert [frequency_of(n) for n in (0, 1, 10, 11, 100, 101, 5000)] == ["r", "r", "r", "c", "c", "f", "f"]
    assert class_word("aerosol_can") == "aerosol can" and class_word("bow_(weapon)") == "bow (weapon)"


# ------------------------------------------------------------------------------------------------ the reader
def _image(path: Path, size=(20, 16)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((size[1], size[0], 3), np.uint8)).save(path)


@pytest.fixture()
def handmade(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "coco"
    _image(root / "train2017" / "000000000007.jpg")
    _image(root / "bare.png")
    _image(root / "custom" / "named.png")
    doc = {
        "images": [
            {"id": 7, "width": 20, "height": 16, "coco_url": "http://images.cocodataset.org/train2017/000000000007.jpg",
             "neg_category_ids": [3], "not_exhaustive_category_ids": [1]},
            {"id": 2, "width": 20, "height": 16, "coco_url": "http://x/val2017/bare.png",
             "neg_category_ids": [], "not_exhaustive_category_ids": []},
            {"id": 5, "width": 20, "height": 16, "file_name": "custom/named.png", "coco_url": "http://x/a/b.png"}],
        "categories": [{"id": 3, "name": "zebra_crossing", "frequency": "f"},
                       {"id": 1, "name": "aerosol_can", "frequency": "r"},
                       {"id": 9, "name": "cab_(taxi)", "frequency": "c"}],
        "annotations": [
            # a polygon: the rectangle x 2..6, y 4..10
            {"id": 1, "image_id": 7, "category_id": 1, "bbox": [2, 4, 4, 6], "area": 24,
             "segmentation": [[2, 4, 6, 4, 6, 10, 2, 10]]},
            {"id": 2, "image_id": 7, "category_id": 9, "bbox": [15, 10, 10, 10], "area": 25,   # clipped to 20x16
             "segmentation": [[15, 10, 20, 10, 20, 16, 15, 16]]},
            {"id": 3, "image_id": 7, "category_id": 1, "bbox": [30, 30, 4, 4], "area": 16,   # outside: dropped
             "segmentation": [[30, 30, 34, 30, 34, 34]]},
            {"id": 4, "image_id": 2, "category_id": 42, "bbox": [1, 1, 2, 2], "area": 4,     # unknown category
             "segmentation": [[1, 1, 3, 1, 3, 3]]}]}
    path = tmp_path / "lvis_v1_train.json"
    path.write_text(json.dumps(doc))
    return root, path


def test_reader_on_a_handwritten_file(handmade):
    root, path = handmade
    skips = SkipCounter()
    reader = LvisRegions(root, path, skip_counter=skips)
    assert reader.classes == ["aerosol can", "zebra crossing", "cab (taxi)"]   # by category id: 1, 3, 9
    assert reader.frequency == ("r", "f", "c") and reader.held_out == ("aerosol can",)
    assert skips.count == 2 and any("annotation 3" in e for e in skips.examples)
    assert [reader.has_boxes(i) for i in range(3)] == [False, False, True]     # ids sorted: 2, 5, 7
    sample = reader[2]
    assert sample.key == str(Path("train2017") / "000000000007.jpg")
    assert sample.boxes.tolist() == [[2, 4, 6, 10], [15, 10, 20, 16]] and sample.labels.tolist() == [0, 2]
    assert sample.masks.shape == (2, 16, 20) and sample.masks[0, 4:10, 2:6].all()
    assert int(sample.masks[0].sum()) == int(sample.masks[0, 4:11, 2:7].sum())   # nothing outside the polygon
    assert sample.federated.negative.tolist() == [1] and sample.federated.not_exhaustive.tolist() == [0]
    assert reader[0].key == "bare.png"                         # coco_url's split folder absent: the bare name
    assert reader[1].key == str(Path("custom") / "named.png")  # a file_name wins over coco_url
    assert image_path(root, {"coco_url": "http://x/val2017/nothing.png"}) == root / "val2017" / "nothing.png"


def test_open_data_names_rare_classes_novel(handmade):
    root, path = handmade
    reader, kind, info = open_data(f"lvis:images={root},annotations={path}", {"boxes", "labels"})
    assert "federated" in kind.fields and info.novel == ("aerosol can",) and reader[2].masks is None
    from clipdense.objectives.fvit import data_vocabulary
    vocabulary = data_vocabulary(info.classes, info.thing_flags(), "", (), info.novel)
    assert vocabulary.base == ["zebra crossing", "cab (taxi)"] and vocabulary.novel == ["aerosol can"]


def test_reader_refuses_bad_files(tmp_path, handmade):
    root, _ = handmade
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"images": [], "annotations": []}))
    with pytest.raises(DataError, match="'categories'"):
        LvisRegions(root, bad)
    bad.write_text(json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "a",
                                                                               "frequency": "x"}]}))
    with pytest.raises(DataError, match="frequency 'x'"):
        LvisRegions(root, bad)
    with pytest.raises(DataError, match="no such LVIS annotation file"):
        LvisRegions(root, tmp_path / "missing.json")


def test_reader_drops_undecodable_masks_at_open(tmp_path, handmade):
    """With masks, an annotation whose segmentation cannot be decoded at its image's size is dropped and named
    (data/validate.py); without masks it keeps its box."""
    root, path = handmade
    doc = json.loads(path.read_text())
    doc["annotations"][1]["segmentation"] = {"size": [8, 8], "counts": [64]}       # RLE of another size
    bad = tmp_path / "masks.json"
    bad.write_text(json.dumps(doc))
    skips = SkipCounter()
    reader = LvisRegions(root, bad, skip_counter=skips)
    assert skips.count == 3 and reader[2].labels.tolist() == [0] and reader[2].masks.shape == (1, 16, 20)
    assert any("annotation 2" in e and "size [8, 8]" in e for e in skips.examples)
    doc["annotations"][0]["segmentation"] = [[2, 4, 6]]                          # not a polygon: nothing left
    (tmp_path / "none.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match="none of its 4 annotations"):
        LvisRegions(root, tmp_path / "none.json")
    boxes_only = LvisRegions(root, tmp_path / "none.json", with_masks=False, skip_counter=SkipCounter())
    assert len(boxes_only[2].boxes) == 2 and boxes_only[2].masks is None


# ------------------------------------------------------------------------------------------------ the world
@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lvisworld") / "lvis"
    write_lvis_world(root, WORLD, SMALL)
    return root


def _doc(world: Path, split: str) -> dict:
    return json.loads((world / "annotations" / f"lvis_v1_{split}.json").read_text())


def test_world_frequencies_follow_the_training_images(world):
    train, val = _doc(world, "train"), _doc(world, "val")
    images = defaultdict(set)
    for ann in train["annotations"]:
        images[ann["category_id"]].add(ann["image_id"])
    for cat in train["categories"]:
        assert cat["image_count"] == len(images[cat["id"]])
        assert cat["frequency"] == frequency_of(len(images[cat["id"]]))
    assert val["categories"] == train["categories"]               # val carries train's statistics, as LVIS does
    plan = plan_world(WORLD, SMALL)
    by_name = {c["name"].replace("_", " "): c["frequency"] for c in train["categories"]}
    assert by_name == plan.target                                  # every class landed in its intended bucket
    assert sorted(by_name.values()) == ["c", "c", "f", "f", "r", "r", "r"]
    assert all("file_name" not in im and im["coco_url"].endswith(f"/train2017/{im['id']:012d}.png")
               for im in train["images"])


def test_world_is_federated(world):
    val = _doc(world, "val")
    boxed = defaultdict(set)
    for ann in val["annotations"]:
        boxed[ann["image_id"]].add(ann["category_id"])
    assert all(im["neg_category_ids"] for im in val["images"])
    for im in val["images"]:
        assert not set(im["neg_category_ids"]) & boxed[im["id"]]            # a negative class is never boxed
        assert set(im["not_exhaustive_category_ids"]) <= boxed[im["id"]]
    plan = plan_world(WORLD, SMALL)
    scenes = [encode_lvis_scene(WORLD, SMALL, plan, "train", i) for i in range(SMALL.train)]
    assert any(s["unchecked"] for s in scenes) and any(s["not_exhaustive"] for s in scenes)
    assert any(not o["annotated"] for s in scenes for o in s["objects"])


def test_world_loads_in_the_lvis_api_and_a_perfect_detector_scores_one(world):
    import lvis
    path = world / "annotations" / "lvis_v1_val.json"
    gt = lvis.LVIS(str(path))
    assert len(gt.get_img_ids()) == SMALL.val and len(gt.get_cat_ids()) == SMALL.classes
    anns = gt.load_anns(gt.get_ann_ids())
    perfect = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0,
                "segmentation": a["segmentation"]} for a in anns]
    for iou in ("bbox", "segm"):
        scores = lvis_ap(path, perfect, iou)
        assert scores["AP"] == 100.0 and scores["APr"] == scores["APc"] == scores["APf"] == 100.0, scores


def test_federated_ap_ignores_unknown_classes_and_punishes_negatives(world):
    """Detections of every drawn object (boxed or not) still score 1.0: unchecked classes and the unboxed twin of
    a not-exhaustive class are not false positives. A detection of a class verified absent is one."""
    path = world / "annotations" / "lvis_v1_val.json"
    plan, ids = plan_world(WORLD, SMALL), category_ids(plan_world(WORLD, SMALL))
    truth, negatives = [], []
    for index in range(SMALL.val):
        scene = encode_lvis_scene(WORLD, SMALL, plan, "val", index)
        truth += [{"image_id": index + 1, "category_id": ids[o["class"]], "bbox": o["bbox"], "score": 1.0}
                  for o in scene["objects"]]
        negatives += [{"image_id": index + 1, "category_id": ids[c], "bbox": [0, 0, 10, 10], "score": 0.9}
                      for c in scene["negative"]]
    assert len(truth) > len(_doc(world, "val")["annotations"])       # some drawn objects are not boxed
    assert lvis_ap(path, truth)["AP"] == 100.0
    assert lvis_ap(path, truth + negatives)["AP"] == 100.0            # below every true detection's score
    worse = [{**n, "score": 1.5} for n in negatives]
    assert lvis_ap(path, truth + worse)["AP"] < 100.0


def test_federated_ap_equals_cocoeval_when_every_class_is_checked():
    """With every absent class negative and nothing non-exhaustive, LVIS's AP is COCO's (pycocotools)."""
    import contextlib
    import io
    from pycocotools.cocoeval import COCOeval
    from clipdense.evaluation.detection import coco_ground_truth
    rng = np.random.default_rng(0)
    images = [{"id": i, "width": 64, "height": 64, "file_name": f"{i}.png"} for i in (1, 2, 3)]
    categories = [{"id": c, "name": f"c{c}", "frequency": "f"} for c in (1, 2)]
    annotations, results = [], []
    for image in images:
        for c in (1, 2):
            x, y = rng.uniform(0, 30, 2)
            box = [float(x), float(y), 20.0, 16.0]
            annotations.append({"id": len(annotations) + 1, "image_id": image["id"], "category_id": c,
                                "bbox": box, "area": 320.0, "iscrowd": 0})
            jitter = rng.uniform(-5, 5, 4)
            results.append({"image_id": image["id"], "category_id": c, "score": float(rng.random()),
                            "bbox": [box[0] + jitter[0], box[1] + jitter[1], 20.0 + jitter[2], 16.0 + jitter[3]]})
        results.append({"image_id": image["id"], "category_id": 1, "score": float(rng.random()),
                        "bbox": [40.0, 40.0, 10.0, 10.0]})
    lvis_images = [{**im, "neg_category_ids": [], "not_exhaustive_category_ids": []} for im in images]
    doc = {"images": lvis_images, "annotations": annotations, "categories": categories}
    ours = lvis_ap(doc, results)
    gt = coco_ground_truth(images, annotations, categories)
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = COCOeval(gt, gt.loadRes(results), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    assert ours["AP"] == pytest.approx(100 * evaluator.stats[0], abs=0.01)
    assert ours["AP50"] == pytest.approx(100 * evaluator.stats[1], abs=0.01)
    assert 0 < ours["AP"] < 100 and np.isnan(ours["APr"]) and ours["APf"] == ours["AP"]


def test_world_config_is_checked():
    with pytest.raises(ConfigError, match="frequent 9"):
        plan_world(WORLD, LvisWorldConfig(classes=5, frequent=9))
    with pytest.raises(ConfigError, match="rare_images"):
        plan_world(WORLD, LvisWorldConfig(rare_images=[0, 3]))
    assert plan_world(WORLD, SMALL).scenes == plan_world(WORLD, SMALL).scenes      # deterministic


def _run(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code)


@pytest.mark.parametrize("argv,expected", [
    (["--lvis", "--lvis-scenes", "5"], "--lvis-scenes"),
    (["--lvis-scenes", "200"], "only with --lvis"),
])
def test_lvis_flags_refuse_bad_values(tmp_path, capsys, argv, expected):
    code = _run(["data", "synth", "--out", str(tmp_path / "w"), "--train", "2", "--val", "1", *argv])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1 and expected in err[0]


@pytest.mark.slow
def test_data_synth_lvis_writes_a_readable_world(tmp_path, capsys):
    out = tmp_path / "w"
    assert _run(["data", "synth", "--out", str(out), "--train", "2", "--val", "1", "--image-size", "48",
                 "--classify-val-per-class", "0", "--classify-train-per-class", "0",
                 "--lvis", "--lvis-scenes", "200"]) == 0
    assert "long-tailed scenes" in capsys.readouterr().out
    reader, _, info = open_data(str(out / "lvis" / "val.yaml"), {"boxes", "labels", "masks", "federated"}, "val")
    assert len(reader) == 50 and info.novel and isinstance(reader[0].boxes, torch.Tensor)
