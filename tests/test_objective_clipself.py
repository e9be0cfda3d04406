"""CLIPSelf: loss by hand, the published grid rule, the teacher cache, exact resume, bad inputs."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from PIL import Image

import clipdense as cd
from clipdense.objectives import build_objective
from clipdense.objectives.clipself import ClipSelfObjective, ClipSelfOptions, ensemble_weights
from clipdense.data.sample import Sample
from clipdense.models.pooling import crop_boxes, expand_boxes
from clipdense.objectives.clipself_regions import grid_boxes
from clipdense.objectives.teacher_cache import TeacherCache, teacher_fingerprint


def _images(n: int, size: tuple[int, int] = (72, 88)) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray((rng.random((*size, 3)) * 255).astype("uint8")) for _ in range(n)]


def _objective(**options) -> ClipSelfObjective:
    torch.manual_seed(0)
    bundle = cd.load_model("tiny-vit-t8", device="cpu")
    return build_objective("clipself", bundle.model, bundle.tokenizer, {"max_regions": 4, **options}, total_steps=4)


def _batch(objective: ClipSelfObjective, images, boxes=None, seed: int = 0):
    transform = objective.sample_transform()
    boxes = boxes or [None] * len(images)
    samples = [Sample(im, f"im{i}", boxes=None if b is None else torch.tensor(b, dtype=torch.float32))
               for i, (im, b) in enumerate(zip(images, boxes))]
    return objective.collate([transform(sample, torch.Generator().manual_seed(seed + i))
                              for i, sample in enumerate(samples)])


@pytest.mark.parametrize("seed", range(40))
def test_grid_follows_published_rule(seed):
    boxes = grid_boxes(torch.Generator().manual_seed(seed), max_split=6, max_regions=20)
    widths = (boxes[:, 2] - boxes[:, 0]).mul(1e4).round().unique() / 1e4
    heights = (boxes[:, 3] - boxes[:, 1]).mul(1e4).round().unique() / 1e4
    assert len(widths) == 1 and len(heights) == 1          # equal cells of one grid
    m, n = round(1 / float(widths[0])), round(1 / float(heights[0]))
    assert 1 <= m <= 6 and math.ceil((m + 1) / 2) <= n <= min(2 * m, 6)
    assert len(boxes) == min(m * n, 20) and len({tuple(b) for b in boxes.tolist()}) == len(boxes)
    assert (boxes >= 0).all() and (boxes <= 1).all()


def test_grid_draws_cover_the_whole_range():
    seen = {(round(1 / float(b[0, 2] - b[0, 0])), round(1 / float(b[0, 3] - b[0, 1])))
            for b in (grid_boxes(torch.Generator().manual_seed(s)) for s in range(400))}
    expected = {(m, n) for m in range(1, 7) for n in range(math.ceil((m + 1) / 2), min(2 * m, 6) + 1)}
    assert seen == expected


def test_expand_boxes_about_centre_and_clipped():
    out = expand_boxes(torch.tensor([[0.4, 0.4, 0.6, 0.6], [0.0, 0.0, 0.2, 0.2]]), 1.5, 1.0, 1.0)
    torch.testing.assert_close(out[0], torch.tensor([0.35, 0.35, 0.65, 0.65]))
    torch.testing.assert_close(out[1], torch.tensor([0.0, 0.0, 0.25, 0.25]))


def test_loss_equals_hand_computed_case():
    objective = _objective()
    batch = _batch(objective, _images(2))
    out = objective(batch)
    student, teacher = objective.model, objective.teacher
    size = batch["image"].shape[-1]
    dense = cd.dense_forward(student, batch["image"], "maskclip").dense  # pooled unnormalised, as CLIPSelf
    losses = []
    for i in range(2):
        for box, crop in zip(batch["boxes"][i][batch["valid"][i]], batch["crops"][i][batch["valid"][i]]):
            feature = cd.pool_boxes(dense[i:i + 1], [box[None] * size], (size, size))[0]
            target = teacher(crop[None])[0]
            losses.append(1 - F.cosine_similarity(feature, target, dim=0))
    torch.testing.assert_close(out["loss"], torch.stack(losses).mean(), atol=1e-5, rtol=1e-5)


def test_student_equals_teacher_at_start_and_only_vision_trains():
    objective = _objective(global_guard=1.0)
    out = objective(_batch(objective, _images(2)))
    assert float(out["global_guard"]) < 1e-5
    out["loss"].backward()
    assert all(p.grad is not None for p in objective.model.visual.parameters())
    assert all(not p.requires_grad for n, p in objective.model.named_parameters() if not n.startswith("visual."))
    assert all(not p.requires_grad for p in objective.teacher.parameters())


def test_teacher_cache_serves_same_targets_and_invalidates(tmp_path):
    objective = _objective(teacher_cache=str(tmp_path))
    batch = _batch(objective, _images(3))
    crops, keys = batch["crops"][batch["valid"]], batch["keys"][:, :-1][batch["valid"]]
    fresh = objective.teacher_targets(crops, keys)
    assert objective.cache.misses == len(keys) and objective.cache.hits == 0
    objective.cache.flush()
    reloaded = TeacherCache(tmp_path, teacher_fingerprint(objective.teacher, f"size={objective.teacher_size}"))
    assert len(reloaded) == len(keys)
    objective.cache = reloaded
    cached = objective.teacher_targets(torch.zeros_like(crops), keys)   # pixels ignored: served from cache
    torch.testing.assert_close(cached, fresh)
    assert reloaded.hits == len(keys)
    # a changed teacher gets another file; changed crops get other keys
    with torch.no_grad():
        objective.teacher.proj.mul_(2)
    assert teacher_fingerprint(objective.teacher, "size=64") != teacher_fingerprint(
        _objective().teacher, "size=64")
    other = _batch(_objective(teacher_cache=str(tmp_path), max_regions=3), _images(3, (80, 80)))
    assert not set(other["keys"].flatten().tolist()) & set(keys.tolist())


def test_cached_regions_skip_their_crops(tmp_path):
    objective = _objective(teacher_cache=str(tmp_path))
    first = _batch(objective, _images(2))
    objective.teacher_targets(first["crops"][first["valid"]], first["keys"][:, :-1][first["valid"]])
    again = _batch(objective, _images(2), seed=50)           # fixed regions: the same keys
    torch.testing.assert_close(again["keys"], first["keys"])
    assert again["crops"].abs().sum() == 0 and first["crops"][first["valid"]].abs().sum() > 0
    loss_cached = objective(again)["loss"]
    objective.cache = None
    torch.testing.assert_close(loss_cached, objective(first)["loss"], atol=1e-5, rtol=1e-5)


def test_fixed_regions_repeat_across_epochs():
    objective = _objective(fixed_regions=True)
    first, second = _batch(objective, _images(2), seed=0), _batch(objective, _images(2), seed=100)
    torch.testing.assert_close(first["boxes"], second["boxes"])
    loose = _objective()
    assert not torch.equal(_batch(loose, _images(2), seed=0)["boxes"], _batch(loose, _images(2), seed=100)["boxes"])


def test_box_regions_use_given_boxes_and_expanded_crops():
    objective = _objective(regions="boxes")
    image = _images(1, (80, 100))[0]
    batch = _batch(objective, [image], [[[10, 20, 50, 60]]])
    assert int(batch["valid"].sum()) == 1
    torch.testing.assert_close(batch["boxes"][0, 0], torch.tensor([0.1, 0.25, 0.5, 0.75]))
    clipped = _batch(objective, [image], [[[10, 20, 150, 60], [200, 200, 300, 300]]])   # overhang / outside
    assert int(clipped["valid"].sum()) == 1
    torch.testing.assert_close(clipped["boxes"][0, 0], torch.tensor([0.1, 0.25, 1.0, 0.75]))
    nothing = _batch(objective, [image], [[[200, 200, 300, 300]]])                      # whole-image fallback
    torch.testing.assert_close(nothing["boxes"][0, 0], torch.tensor([0.0, 0.0, 1.0, 1.0]))


def test_teacher_crops_are_the_evaluation_crop_path():
    """The teacher sees exactly what the evaluation's `crops` baseline embeds: crop_boxes of the expanded box."""
    objective = _objective(regions="boxes", box_expand=1.5)
    image = _images(1, (80, 100))[0]
    batch = _batch(objective, [image], [[[10, 20, 50, 60]]])
    pixels = TF.normalize(TF.to_tensor(image), list(objective.mean), list(objective.std))[None]
    box = expand_boxes(torch.tensor([[10.0, 20.0, 50.0, 60.0]]), 1.5, 80, 100)
    size = objective.teacher_size
    torch.testing.assert_close(batch["crops"][0, 0], crop_boxes(pixels, [box], (size, size))[0], atol=1e-4, rtol=0)


def test_ensemble_weights_mix():
    objective = _objective()
    with torch.no_grad():
        objective.model.logit_scale.fill_(1.0)
    teacher = cd.load_model("tiny-vit-t8", device="cpu").model
    with torch.no_grad():
        teacher.logit_scale.fill_(2.0)
    mixed = ensemble_weights(objective.model, teacher, 0.7)
    assert abs(float(mixed.logit_scale) - 1.3) < 1e-6


def test_bad_inputs():
    bundle = cd.load_model("tiny-vit-t8", device="cpu")
    other = cd.load_model("tiny-vit-s8", device="cpu")
    with pytest.raises(cd.ConfigError, match="same image-tower architecture"):
        ClipSelfObjective(bundle.model, bundle.tokenizer, ClipSelfOptions(), teacher=other.model)
    with pytest.raises(cd.ConfigError, match="regions"):
        build_objective("clipself", bundle.model, bundle.tokenizer, {"regions": "circles"})
    with pytest.raises(cd.ConfigError, match="unknown config key"):
        build_objective("clipself", bundle.model, bundle.tokenizer, {"global_gaurd": 1.0})
    objective = _objective(student_size=4)
    with pytest.raises(cd.ConfigError, match="smaller than"):
        objective(_batch(objective, _images(1)))
