"""PQ / SQ / RQ (evaluation/panoptic_quality.py) equal torchmetrics' PanopticQuality on random panoptic maps (void,
unknown classes, stuff instances merged, several images) under its protocol; hand-made cases, where panopticapi's
protocol (the default) and torchmetrics' differ on unpredicted pixels; the option is checked in one line."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torchmetrics.detection import PanopticQuality as Reference

from clipdense.errors import ConfigError
from clipdense.evaluation import build_task_options, parse_task_args
from clipdense.evaluation.panoptic_quality import PanopticQuality

THINGS, STUFF, UNKNOWN = [0, 1, 2], [3, 4], 9


def _random_maps(seed: int, size: int = 12) -> torch.Tensor:
    """(H, W, 2) (category, instance): blocks of random classes and instances, some unknown (void)."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, 6, (size // 3, size // 3, 1), generator=generator)
    coarse[coarse == 5] = UNKNOWN
    instances = torch.randint(0, 3, (size // 3, size // 3, 1), generator=generator)
    maps = torch.cat([coarse, instances], -1).repeat_interleave(3, 0).repeat_interleave(3, 1)
    noise = torch.rand(size, size, generator=generator) < 0.15          # ragged edges: partial overlaps
    maps[noise, 0] = torch.randint(0, 5, (int(noise.sum()),), generator=generator)
    return maps


def _segments(maps: torch.Tensor) -> tuple[np.ndarray, dict[int, int]]:
    """The same map as segment ids (0 = void) and id -> category."""
    ids = np.zeros(maps.shape[:2], dtype=np.int64)
    labels: dict[int, int] = {}
    for index, (cat, inst) in enumerate(torch.unique(maps.reshape(-1, 2), dim=0).tolist(), start=1):
        if cat == UNKNOWN:
            continue
        ids[((maps[..., 0] == cat) & (maps[..., 1] == inst)).numpy()] = index
        labels[index] = cat
    return ids, labels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pq_equals_torchmetrics_on_random_maps(seed: int) -> None:
    preds = torch.stack([_random_maps(100 * seed + i) for i in range(3)])
    target = torch.stack([_random_maps(100 * seed + 50 + i) for i in range(3)])
    target[:, :, :4] = preds[:, :, :4]                          # some true matches
    reference = Reference(THINGS, STUFF, allow_unknown_preds_category=True, return_sq_and_rq=True,
                          return_per_class=True)
    per_class = reference(preds, target).reshape(-1, 3).double().numpy()    # (classes, [pq, sq, rq])
    overall = Reference(THINGS, STUFF, allow_unknown_preds_category=True, return_sq_and_rq=True)(preds, target)
    ours = PanopticQuality([True, True, True, False, False], "torchmetrics")
    for p, t in zip(preds, target):
        ours.update(*_segments(p), *_segments(t))
    pq, sq, rq, occurs = ours.per_class()
    assert np.allclose(np.stack([pq, sq, rq], 1), per_class, atol=1e-6)
    result = ours.compute()
    assert [result["pq"], result["sq"], result["rq"]] == pytest.approx((100 * overall.double()).tolist(), abs=1e-4)
    assert result["pq_th"] == pytest.approx(100 * per_class[:3, 0][occurs[:3]].mean(), abs=1e-4)
    assert result["pq_st"] == pytest.approx(100 * per_class[3:, 0][occurs[3:]].mean(), abs=1e-4)


def test_pq_of_a_hand_made_case() -> None:
    gt = np.array([[1, 1, 2, 2]] * 4)                       # thing 0 (8 px) | stuff 1 (8 px)
    pred = np.array([[1, 1, 1, 2]] * 4)                     # thing 0 (12 px: IoU 8/12) | stuff 1 (4 px: IoU 0.5)
    metric = PanopticQuality([True, False])
    metric.update(pred, {1: 0, 2: 1}, gt, {1: 0, 2: 1})
    result = metric.compute()
    assert result["pq_th"] == pytest.approx(100 * 8 / 12)   # TP: SQ 2/3, RQ 1
    assert result["pq_st"] == 0 and result["rq_st"] == 0    # IoU 0.5 is no match: one FP, one FN
    assert result["pq"] == pytest.approx(100 * 8 / 12 / 2)
    assert math.isnan(PanopticQuality([True]).compute()["pq"])


def test_a_missed_thing_is_a_false_negative_for_panopticapi_only() -> None:
    gt = np.array([[1, 1, 2, 2]] * 4)                       # thing 0 (8 px) | stuff 1 (8 px)
    pred = np.array([[0, 0, 2, 2]] * 4)                     # the thing left void, the stuff exact
    found = {}
    for protocol in ("panopticapi", "torchmetrics"):
        metric = PanopticQuality([True, False], protocol)
        metric.update(pred, {2: 1}, gt, {1: 0, 2: 1})
        found[protocol] = metric.compute()
    assert found["panopticapi"]["pq_th"] == 0 and found["panopticapi"]["pq"] == 50    # one FN: PQ (0 + 100) / 2
    assert math.isnan(found["torchmetrics"]["pq_th"]) and found["torchmetrics"]["pq"] == 100
    maps = lambda ids, cats: torch.tensor(np.stack([np.vectorize(cats.get)(ids), ids], -1))[None]  # noqa: E731
    reference = Reference([0], [1], allow_unknown_preds_category=True)
    assert reference(maps(pred, {0: UNKNOWN, 2: 1}), maps(gt, {1: 0, 2: 1})).item() == pytest.approx(1.0)


def test_unpredicted_pixels_stay_in_the_union_for_panopticapi() -> None:
    gt = np.array([[1, 1, 2, 2]] * 4)
    pred = np.array([[1, 1, 2, 2]] * 3 + [[0, 0, 2, 2]])    # the thing's last row (2 px) unpredicted
    sq = {}
    for protocol in ("panopticapi", "torchmetrics"):
        metric = PanopticQuality([True, False], protocol)
        metric.update(pred, {1: 0, 2: 1}, gt, {1: 0, 2: 1})
        sq[protocol] = metric.compute()["sq_th"]
    assert sq["panopticapi"] == pytest.approx(100 * 6 / 8) and sq["torchmetrics"] == pytest.approx(100.0)


def test_bad_protocol_is_one_line() -> None:
    with pytest.raises(ConfigError) as info:
        build_task_options([], parse_task_args({"panoptic.protocol": "coco"}), lambda t, k: f"--task-arg {t}.{k}")
    assert str(info.value) == ("--task-arg panoptic.protocol 'coco': unknown ['coco'], expected one of panopticapi, "
                               "torchmetrics")
    with pytest.raises(ValueError, match="PQ protocol 'coco'"):
        PanopticQuality([True], "coco")
