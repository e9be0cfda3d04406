"""GLIP (issue 26): the objective on grounding and detection data, the grounding recall metric, and a head that
overfits a handful of world images."""
from __future__ import annotations

import pytest
import torch

from clipdense.data.readers import open_data
from clipdense.errors import ConfigError
from clipdense.evaluation.grounding import first_hit, phrase_recall
from clipdense.objectives import build_objective, objective_options
from glip_toy import Subset, fit_batch, small_world

TINY = {"channels": 32, "layers": 2, "fusion_dim": 32, "fusion_heads": 4, "layer_scale": 0.1, "image_size": 64}


@pytest.fixture(scope="module")
def grounded_world(tmp_path_factory):
    return small_world(tmp_path_factory.mktemp("grounded-world"), 8, 4)


def test_phrase_recall_hand_computed():
    truth = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    ranked = torch.tensor([[50.0, 50.0, 60.0, 60.0], [20.0, 20.0, 30.0, 31.0], [0.0, 0.0, 30.0, 30.0]])
    assert first_hit(ranked, truth, merged=False) == 2      # the second box matches the second truth
    assert first_hit(ranked, truth, merged=True) == 3       # only the third covers the union box
    result = phrase_recall([ranked, torch.zeros(0, 4)], [truth, truth], ks=(1, 2, 3))
    assert result["any"] == {"R@1": 0.0, "R@2": 50.0, "R@3": 50.0}
    assert result["merged"] == {"R@1": 0.0, "R@2": 0.0, "R@3": 50.0}


def test_glip_options_refuse_bad_values():
    with pytest.raises(ConfigError, match="data='boxes'"):
        build_objective("glip", None, {"data": "boxes"})
    with pytest.raises(ConfigError, match="jitter"):
        build_objective("glip", None, {"jitter": [2.0, 1.0]})


def test_glip_objective_on_grounding_data(bundle, grounded_world):
    options = objective_options("glip", TINY)
    reader, _, info = open_data(str(grounded_world), needs={"boxes", "phrases"})
    objective = build_objective("glip", bundle, options, info)
    transform = objective.sample_transform()
    sample = next(s for s in (reader[i] for i in range(len(reader))) if len(s.phrases))
    item = transform(sample, torch.Generator().manual_seed(0))
    assert item["image"].shape == (3, 64, 64) and item["ids"].shape == (32,)
    rows = item["positive"][item["valid"]]
    assert len(rows) >= 1 and bool((rows.sum(1) > 0).all())
    assert bool((item["ids"][rows[0] > 0] != 0).all())      # positives sit on real tokens of the caption
    batch = objective.collate([item, transform(reader[0], torch.Generator().manual_seed(1))])
    losses = objective(batch)
    assert torch.isfinite(losses["loss"]) and {"loss_align", "loss_giou", "loss_centerness"} <= set(losses)
    losses["loss"].backward()
    assert objective.head.token.weight.grad is not None


def test_glip_objective_turns_detection_data_into_base_class_prompts(bundle, grounded_world):
    options = objective_options("glip", {**TINY, "data": "detection", "negatives": 3})
    reader, _, info = open_data(str(grounded_world), needs={"boxes", "labels"})
    objective = build_objective("glip", bundle, options, info)
    novel = set(info.novel)
    assert objective.allowed and not {info.classes[i] for i in objective.allowed} & novel
    sample = next(s for s in (reader[i] for i in range(len(reader))) if len(s.boxes))
    prompted = objective.sample_transform().phrases(sample, torch.Generator().manual_seed(0))
    names = prompted.phrases.text[:-1].split(". ")
    assert not set(names) & novel and all(n in info.classes for n in names)
    kept_labels = [int(c) for c in sample.labels if int(c) in set(objective.allowed)]
    assert [prompted.phrases.phrase(int(p)) for p in prompted.phrases.box_phrase] == \
        [info.classes[c] for c in kept_labels]


@pytest.mark.slow
def test_glip_head_overfits_a_handful_of_world_images(grounded_world):
    """The cheapest proof that learning works: grounding R@1 (ANY-box) >= 0.9 on the images it trained on."""
    import clipdense as cd
    from clipdense.evaluation.grounding import evaluate_grounding
    from clipdense.objectives.base import stack_collate

    torch.manual_seed(0)
    bundle = cd.load_model("tiny-vit-t8", pretrained="synthworld", device="cpu")
    options = objective_options("glip", {**TINY, "jitter": [1.0, 1.0]})
    reader, _, info = open_data(str(grounded_world), needs={"boxes", "phrases"})
    indices = [i for i in range(len(reader)) if len(reader[i].phrases)][:4]
    objective = build_objective("glip", bundle, options, info)
    transform = objective.sample_transform()
    batch = stack_collate([transform(reader[i], torch.Generator().manual_seed(i)) for i in indices])
    fit_batch(objective, batch, 300)
    result = evaluate_grounding(objective.head, Subset(reader, indices))
    assert result["num_phrases"] >= 4
    assert result["any"]["R@1"] >= 90.0, result
