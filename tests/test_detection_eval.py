"""Box AP: the novel / base / all groups equal pycocotools' COCOeval restricted to each group's categories."""
from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from pycocotools.cocoeval import COCOeval

from clipdense.evaluation.detection import box_ap, coco_ground_truth


def _toy(seed: int = 0):
    rng = np.random.default_rng(seed)
    images, annotations, results = [], [], []
    for image_id in range(1, 9):
        images.append({"id": image_id, "file_name": f"{image_id}.png", "width": 100, "height": 100})
        for _ in range(3):
            x, y, w, h = (float(v) for v in rng.uniform([0, 0, 10, 10], [60, 60, 40, 40]))
            category = int(rng.integers(1, 5))
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category,
                                "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
            jitter = rng.normal(0, 3, 4)
            results.append({"image_id": image_id, "category_id": category if rng.random() < 0.7 else 5 - category,
                            "bbox": [x + jitter[0], y + jitter[1], w + jitter[2], h + jitter[3]],
                            "score": float(rng.random())})
    categories = [{"id": i, "name": f"c{i}"} for i in range(1, 5)]
    return images, annotations, categories, results


def _coco_eval(gt, results, category_ids):
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = COCOeval(gt, gt.loadRes(results), "bbox")
        evaluator.params.catIds = list(category_ids)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats


def test_groups_equal_restricted_cocoeval():
    images, annotations, categories, results = _toy()
    gt = coco_ground_truth(images, annotations, categories)
    out = box_ap(gt, results, {"novel": [1, 2], "base": [3, 4], "all": [1, 2, 3, 4]})
    for group, ids in (("novel", [1, 2]), ("base", [3, 4]), ("all", [1, 2, 3, 4])):
        stats = _coco_eval(gt, results, ids)
        assert out["AP50"][group] == pytest.approx(100 * stats[1], abs=0.01)
        assert out["AP"][group] == pytest.approx(100 * stats[0], abs=0.01)
    assert out["AR100"] == pytest.approx(100 * _coco_eval(gt, results, [1, 2, 3, 4])[8], abs=0.01)
    assert 0 < out["AP50"]["all"] < 100


def test_perfect_and_empty_detections():
    images, annotations, categories, _ = _toy(1)
    gt = coco_ground_truth(images, annotations, categories)
    perfect = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
               for a in annotations]
    out = box_ap(gt, perfect, {"all": [1, 2, 3, 4], "none": [9]})
    assert out["AP50"]["all"] == 100.0 and out["AP"]["all"] == 100.0
    assert np.isnan(out["AP50"]["none"])                   # a group without ground truth has no AP
    assert box_ap(gt, [], {"all": [1, 2, 3, 4]})["AP50"]["all"] == 0.0
