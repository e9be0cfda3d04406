"""CLIPSelf: loss by hand, the published grid rule, the teacher cache, exact resume, bad inputs."""
from __future__ import annotations


import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from PIL import Image

import clipdense as cd
from clipdense.objectives import build_objective
from clipdense.objectives.clipself import ClipSelfObjective, ClipSelfOptions, cache_view, ensemble_weights
from clipdense.data.sample import Sample
from clipdense.models.pooling import crop_boxes, expand_boxes, teacher_crops
from clipdense.objectives.clipself_regions import grid_boxes
from clipdense.objectives.teacher_cache import TeacherCache, teacher_fingerprint


def _images(n: int, size: tuple[int, int] = (72, 88)) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray((rng.random((*size, 3)) * 255).astype("uint8")) for _ in range(n)]


def _objective(**options) -> ClipSelfObjective:
    torch.manual_seed(0)
    bundle = cd.load_model("tiny-vit-t8", device="cpu")
    return build_objective("clipself", bundle, {"max_regions": 4, **options}, total_steps=4)


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
    cols, rows = round(1 / float(widths[0])), round(1 / float(heights[0]))
    assert 1 <= rows <= 6 and (rows + 1) // 2 <= cols <= min(2 * rows, 6)
    assert len(boxes) == min(rows * cols, 20) and len({tuple(b) for b in boxes.tolist()}) == len(boxes)
    assert (boxes >= 0).all() and (boxes <= 1).all()


def test_grid_draws_the_24_official_pairs_uniformly():
    """The official law: uniform over (rows, cols) with cols in floor((rows+1)/2)..min(2 rows, 6) - 24 pairs,
    1x2 (one row, two columns), 2x4 and 3x6 among them (the old rule never drew those)."""
    counts: dict[tuple[int, int], int] = {}
    for s in range(2400):
        b = grid_boxes(torch.Generator().manual_seed(s))
        pair = (round(1 / float(b[0, 3] - b[0, 1])), round(1 / float(b[0, 2] - b[0, 0])))
        counts[pair] = counts.get(pair, 0) + 1
    expected = {(m, n) for m in range(1, 7) for n in range((m + 1) // 2, min(2 * m, 6) + 1)}
    assert set(counts) == expected and len(expected) == 24 and {(1, 2), (2, 4), (3, 6)} <= expected
    assert all(50 <= c <= 150 for c in counts.values())   # 100 expected each
    assert counts[(1, 1)] < 150                           # the whole image is not drawn twice as often


def test_expand_boxes_about_centre_and_clipped():
    out = expand_boxes(torch.tensor([[0.4, 0.4, 0.6, 0.6], [0.0, 0.0, 0.2, 0.2]]), 1.5, 1.0, 1.0)
    torch.testing.assert_close(out[0], torch.tensor([0.35, 0.35, 0.65, 0.65]))
    torch.testing.assert_close(out[1], torch.tensor([0.0, 0.0, 0.25, 0.25]))


@pytest.mark.parametrize("normalize_patches", [True, False])
def test_loss_equals_hand_computed_case(normalize_patches):
    objective = _objective(normalize_patches=normalize_patches)
    batch = _batch(objective, _images(2))
    out = objective(batch)
    student, teacher = objective.model, objective.teacher
    size = batch["image"].shape[-1]
    # the official order: unit-norm patch features, then RoIAlign, then unit norm again (fails for raw pooling);
    # normalize_patches=False pools the raw map (the demo's choice on its tiny tower)
    dense = cd.dense_forward(student, batch["image"], "maskclip").dense
    dense = F.normalize(dense, dim=1) if normalize_patches else dense
    losses = []
    for i in range(2):
        for box, crop in zip(batch["boxes"][i][batch["valid"][i]], batch["crops"][i][batch["valid"][i]]):
            feature = cd.pool_boxes(dense[i:i + 1], [box[None] * size], (size, size))[0]
            target = teacher(crop[None])[0]
            losses.append(1 - F.cosine_similarity(feature, target, dim=0))
    torch.testing.assert_close(out["loss"], torch.stack(losses).mean(), atol=1e-5, rtol=1e-5)


def test_student_equals_teacher_at_start_and_only_the_blocks_train():
    """Published recipe: only the transformer blocks train; patch embedding, class/position embeddings,
    ln_pre, ln_post and proj stay frozen ("fix output layers")."""
    objective = _objective(global_guard=1.0)
    out = objective(_batch(objective, _images(2)))
    assert float(out["global_guard"]) < 1e-5
    out["loss"].backward()
    trainable = {n for n, p in objective.model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("visual.transformer.resblocks.") for n in trainable)
    assert all(objective.model.get_parameter(n).grad is not None for n in trainable)
    frozen = {"visual.conv1.weight", "visual.class_embedding", "visual.positional_embedding", "visual.ln_pre.weight",
              "visual.ln_post.weight", "visual.ln_post.bias", "visual.proj", "token_embedding.weight"}
    assert not frozen & trainable
    assert all(not p.requires_grad for p in objective.teacher.parameters())
    whole = _objective(train="tower")
    assert {n for n, p in whole.model.named_parameters() if p.requires_grad} == {
        n for n, _ in whole.model.named_parameters() if n.startswith("visual.")}


def test_teacher_cache_serves_same_targets_and_invalidates(tmp_path):
    objective = _objective(teacher_cache=str(tmp_path))
    batch = _batch(objective, _images(3))
    crops, keys = batch["crops"][batch["valid"]], batch["keys"][:, :-1][batch["valid"]]
    fresh = objective.teacher_targets(crops, keys)
    assert objective.cache.misses == len(keys) and objective.cache.hits == 0
    objective.cache.flush()
    reloaded = TeacherCache(tmp_path, teacher_fingerprint(objective.teacher, cache_view(objective.teacher_size, True)))
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
    # squashed crops are other pixels under the same keys: another file, never the letterboxed embeddings
    squashed = _objective(teacher_cache=str(tmp_path), keep_aspect=False)
    assert len(squashed.cache) == 0 and squashed.cache.path != reloaded.path


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


def test_guards_see_real_pixels_when_the_cache_serves_the_teacher(tmp_path):
    """The student embeds the guards' views itself: a cached teacher embedding must not blank them (it did:
    a repeated image fed the global guard a black picture, and boxes expanded to the whole image share its key)."""
    objective = _objective(teacher_cache=str(tmp_path), global_guard=1.0)
    first = _batch(objective, _images(2))
    objective.teacher_targets(first["crops"][first["valid"]], first["keys"][:, :-1][first["valid"]])
    objective.teacher_targets(first["global"], first["keys"][:, -1])
    again = _batch(objective, _images(2), seed=50)
    assert again["crops"].abs().sum() == 0                    # the teacher's crops are served, not cut
    torch.testing.assert_close(again["global"], first["global"])
    loss_cached = objective(again)
    objective.cache = None
    uncached = objective(first)
    torch.testing.assert_close(loss_cached["global_guard"], uncached["global_guard"], atol=1e-5, rtol=1e-5)
    crop_guarded = _objective(teacher_cache=str(tmp_path), crop_guard=1.0)
    crop_guarded.teacher_targets(first["crops"][first["valid"]], first["keys"][:, :-1][first["valid"]])
    torch.testing.assert_close(_batch(crop_guarded, _images(2), seed=50)["crops"], first["crops"])


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
    # 100 x 80 letterboxed into the square canvas: x / 100, y / 100 (the bottom 20 % is padding)
    torch.testing.assert_close(batch["boxes"][0, 0], torch.tensor([0.1, 0.2, 0.5, 0.6]))
    squashed = _batch(_objective(regions="boxes", keep_aspect=False), [image], [[[10, 20, 50, 60]]])
    torch.testing.assert_close(squashed["boxes"][0, 0], torch.tensor([0.1, 0.25, 0.5, 0.75]))
    clipped = _batch(objective, [image], [[[10, 20, 150, 60], [200, 200, 300, 300]]])   # overhang / outside
    assert int(clipped["valid"].sum()) == 1
    torch.testing.assert_close(clipped["boxes"][0, 0], torch.tensor([0.1, 0.2, 1.0, 0.6]))
    nothing = _batch(objective, [image], [[[200, 200, 300, 300]]])                      # whole-image fallback
    torch.testing.assert_close(nothing["boxes"][0, 0], torch.tensor([0.0, 0.0, 1.0, 0.8]))
    small = _batch(objective, [image], [[[10, 20, 50, 60], [0, 0, 7, 9]]])              # 63 px^2 < 8^2: dropped
    assert int(small["valid"].sum()) == 1


def test_student_image_is_letterboxed_bottom_right():
    objective = _objective(regions="boxes", student_size=50)
    image = Image.new("RGB", (100, 80), (255, 255, 255))
    batch = _batch(objective, [image], [[[10, 20, 50, 60]]])
    black = (0 - torch.tensor(objective.mean)) / torch.tensor(objective.std)
    white = (1 - torch.tensor(objective.mean)) / torch.tensor(objective.std)
    torch.testing.assert_close(batch["image"][0, :, :40, :].mean((1, 2)), white, atol=1e-3, rtol=0)
    torch.testing.assert_close(batch["image"][0, :, 40:, :].mean((1, 2)), black, atol=1e-3, rtol=0)
    crop = batch["crops"][0, 0]                               # 60 x 60 expanded box: square, no padding
    torch.testing.assert_close(crop.mean((1, 2)), white, atol=1e-3, rtol=0)


def test_teacher_crops_are_the_evaluation_crop_path():
    """The teacher sees exactly what the evaluation's `crops` baseline embeds: crop_boxes of the expanded box."""
    objective = _objective(regions="boxes", box_expand=1.5)
    image = _images(1, (80, 100))[0]
    batch = _batch(objective, [image], [[[10, 20, 50, 60]]])
    pixels = TF.normalize(TF.to_tensor(image), list(objective.mean), list(objective.std))[None]
    box = expand_boxes(torch.tensor([[10.0, 20.0, 50.0, 60.0]]), 1.5, 80, 100)
    size = objective.teacher_size
    black = [-m / s for m, s in zip(objective.mean, objective.std)]
    expected = crop_boxes(pixels, [box], (size, size), keep_aspect=True, fill=black)[0]
    torch.testing.assert_close(batch["crops"][0, 0], expected, atol=1e-4, rtol=0)
    assert torch.equal(expected, teacher_crops(pixels, [box], size, objective.mean, objective.std)[0])


def test_keep_aspect_crops_pad_bottom_right() -> None:
    images = torch.arange(2 * 4 * 6, dtype=torch.float32).reshape(1, 2, 4, 6)
    wide = crop_boxes(images, [torch.tensor([[0.0, 0.0, 6.0, 2.0]])], (3, 3), keep_aspect=True, fill=[-1.0, -2.0])
    assert wide.shape == (1, 2, 3, 3)
    assert (wide[0, 0, 1:] == -1).all() and (wide[0, 1, 1:] == -2).all()    # a 6 x 2 box fills 3 x 1
    assert (wide[0, :, :1] >= 0).all()
    stretched = crop_boxes(images, [torch.tensor([[0.0, 0.0, 6.0, 2.0]])], (3, 3))
    assert (stretched >= 0).all()


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
        ClipSelfObjective(bundle, ClipSelfOptions(), teacher=other.model)
    with pytest.raises(cd.ConfigError, match="regions"):
        build_objective("clipself", bundle, {"regions": "circles"})
    with pytest.raises(cd.ConfigError, match="unknown config key"):
        build_objective("clipself", bundle, {"global_gaurd": 1.0})
    objective = _objective(student_size=4)
    with pytest.raises(cd.ConfigError, match="smaller than"):
        objective(_batch(objective, _images(1)))


@pytest.mark.parametrize("keep_aspect", [True, False])
def test_evaluation_crops_follow_the_students_view(keep_aspect):
    """`clipdense eval --crops letterbox|stretch`: the crops baseline is the teacher view of the run compared."""
    from clipdense.evaluation.context import EvalContext, EvalSettings

    bundle = cd.load_model("tiny-vit-t8", device="cpu")
    ctx = EvalContext(bundle, torch.device("cpu"), EvalSettings(image_size=64), data=None)
    images, boxes = torch.randn(1, 3, 40, 60), [torch.tensor([[0.0, 0.0, 60.0, 20.0]])]
    objective = _objective(keep_aspect=keep_aspect)
    expected = teacher_crops(images, boxes, objective.teacher_size, objective.mean, objective.std, keep_aspect)
    assert torch.equal(ctx.crop(images, boxes, keep_aspect), expected)
    assert ctx.crop(images, boxes, keep_aspect).shape == (1, 3, 64, 64)
