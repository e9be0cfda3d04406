"""Panoptic merging, semantic / instance inference and the open-vocabulary ensemble on hand-made cases
(heads/segmentation/panoptic_merge.py): overlaps resolved by score x mask probability, stuff of one class merged,
the overlap threshold, and FC-CLIP's geometric ensemble with separate seen / unseen exponents."""
from __future__ import annotations

import math

import pytest
import torch

from clipdense.heads.segmentation.panoptic_merge import (instance_predictions, merge_panoptic,
                                                         open_vocabulary_probabilities, semantic_scores)

ISTHING = torch.tensor([True, False])      # class 0 a thing ("circle"), class 1 stuff ("sky")


def _queries() -> tuple[torch.Tensor, torch.Tensor]:
    """Six queries on a 4 x 4 image (columns: class 0, class 1, no object)."""
    probs = torch.tensor([[0.90, 0.05, 0.05],     # q0 thing, columns 0-1
                          [0.95, 0.03, 0.02],     # q1 thing, columns 1-2: wins column 1 (0.95 > 0.90)
                          [0.05, 0.85, 0.10],     # q2 stuff, column 3 top half
                          [0.05, 0.90, 0.05],     # q3 stuff, column 3 bottom half: merged with q2
                          [0.05, 0.05, 0.90],     # q4 no object
                          [0.50, 0.20, 0.30]])    # q5 below the object threshold
    masks = torch.zeros(6, 4, 4)
    masks[0, :, 0:2] = 1
    masks[1, :, 1:3] = 1
    masks[2, 0:2, 3] = 1
    masks[3, 2:4, 3] = 1
    masks[4] = 1
    masks[5] = 1
    return probs, masks


def test_merging_drops_a_query_that_lost_most_of_its_mask_and_merges_stuff() -> None:
    probs, masks = _queries()
    result = merge_panoptic(probs, masks, ISTHING, object_threshold=0.8, overlap_threshold=0.8)
    expected = torch.tensor([[0, 1, 1, 2]] * 4)           # q0 kept only 4 of its 8 pixels: dropped
    assert torch.equal(result.ids, expected)
    assert [(s.id, s.label, s.isthing, s.area) for s in result.segments] == [(1, 0, True, 8), (2, 1, False, 2 + 2)]
    assert result.segments[1].score == pytest.approx(0.90)             # merged stuff keeps its best score
    assert torch.equal(result.semantic(), torch.tensor([[-1, 0, 0, 1]] * 4))


def test_a_lower_overlap_threshold_keeps_the_occluded_instance() -> None:
    probs, masks = _queries()
    result = merge_panoptic(probs, masks, ISTHING, object_threshold=0.8, overlap_threshold=0.4)
    assert torch.equal(result.ids, torch.tensor([[1, 2, 2, 3]] * 4))
    assert [(s.label, s.isthing, s.area) for s in result.segments] == [(0, True, 4), (0, True, 8), (1, False, 4)]
    masks_out, labels, scores = result.instances()
    assert masks_out.shape == (2, 4, 4) and labels.tolist() == [0, 0]
    assert scores.tolist() == pytest.approx([0.90, 0.95])


def test_the_object_threshold_and_empty_results() -> None:
    probs, masks = _queries()
    result = merge_panoptic(probs, masks, ISTHING, object_threshold=0.99, overlap_threshold=0.8)
    assert result.segments == [] and int(result.ids.abs().sum()) == 0
    only_best = merge_panoptic(probs, masks, ISTHING, object_threshold=0.92, overlap_threshold=0.8)
    assert torch.equal(only_best.ids, torch.tensor([[0, 1, 1, 0]] * 4))      # q1 alone is sure enough


def test_semantic_and_instance_inference_of_the_same_queries() -> None:
    probs, masks = _queries()
    scores = semantic_scores(probs, masks)                # sum over queries of p(class) x mask
    assert scores[0, 0, 0] == pytest.approx(0.90 + 0.05 + 0.50)
    assert scores[1, 0, 3] == pytest.approx(0.85 + 0.05 + 0.20)
    masks_out, labels, out_scores = instance_predictions(probs, masks, ISTHING, limit=2)
    assert labels.tolist() == [0, 0]                      # the two best (query, thing) pairs: q1 then q0
    assert torch.equal(masks_out[0], masks[1] > 0.5) and out_scores.tolist() == pytest.approx([0.95, 0.90])


def test_ensemble_is_fc_clips_geometric_mean_with_seen_and_unseen_exponents() -> None:
    in_logits = torch.log(torch.tensor([[0.6, 0.2, 0.2]]))   # head: classes 0.75 / 0.25, no object 0.2
    out_probs = torch.tensor([[0.2, 0.8]])
    seen = torch.tensor([True, False])
    got = open_vocabulary_probabilities(in_logits, out_probs, seen, alpha=0.4, beta=0.8)
    a = 0.75 ** 0.6 * 0.2 ** 0.4                          # seen: in^(1 - alpha) out^alpha
    b = 0.25 ** 0.2 * 0.8 ** 0.8                          # unseen: in^(1 - beta) out^beta
    expected = [0.8 * a / (a + b), 0.8 * b / (a + b), 0.2]
    assert got[0].tolist() == pytest.approx(expected, abs=1e-6)
    head_only = open_vocabulary_probabilities(in_logits, out_probs, seen, 0.0, 0.0)
    assert head_only[0].tolist() == pytest.approx([0.6, 0.2, 0.2], abs=1e-6)
    clip_only = open_vocabulary_probabilities(in_logits, out_probs, seen, 1.0, 1.0)
    assert clip_only[0].tolist() == pytest.approx([0.8 * 0.2, 0.8 * 0.8, 0.2], abs=1e-6)
    assert math.isclose(float(got.sum()), 1.0, rel_tol=1e-6)
