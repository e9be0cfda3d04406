"""Task evaluators with toy analytic models (big_vision's habit): the answers are known exactly.

The toy "model" sees colours. Eight palette colours (corners of the RGB cube in [-1, 1]) are the eight
classes; an embedding is softmax(10 * palette @ mean colour), nearly one-hot on the nearest palette colour,
and the "text encoder" maps a class name to the same one-hot vector. So a correct evaluator must score
100 %, and a deranged text encoder 0 %.
"""
from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from clipdense.errors import ConfigError
from clipdense.evaluation.region_methods import RegionBatch, RegionEncoders
from clipdense.evaluation.regions import region_classification
from clipdense.models.pooling import expand_boxes
from clipdense.evaluation.report import json_ready
from clipdense.evaluation.retrieval import retrieval
from clipdense.evaluation.segmentation import Feed, segmentation_both, segmentation_with_background, \
    semantic_segmentation
from clipdense.evaluation.zeroshot import zeroshot_classification

PALETTE = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=3)))  # (8, 3)
NAMES = [f"colour{i}" for i in range(8)]
THINGS, STUFF = [0, 1, 2, 3, 4], [5, 6, 7]
DERANGED = [1, 2, 3, 4, 5, 6, 7, 0]


def colour_feature(rgb: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Nearly one-hot over the palette, along ``dim`` of an RGB tensor."""
    return (10 * torch.tensordot(rgb.movedim(dim, -1), PALETTE.t(), dims=1)).softmax(-1).movedim(-1, dim)


def encode_image(images: torch.Tensor) -> torch.Tensor:
    """Mean colour of the central half of the image: robust to the context around an expanded crop."""
    h, w = images.shape[-2:]
    centre = images[..., h // 4: h - h // 4, w // 4: w - w // 4]
    return colour_feature(centre.mean(dim=(2, 3)))


def encode_dense(images: torch.Tensor) -> torch.Tensor:
    """A (B, 8, H/4, W/4) 'patch' map: colour feature of each 4x4 patch."""
    return colour_feature(F.avg_pool2d(images, 4))


def classifier(order: list[int] | None = None) -> torch.Tensor:
    return torch.eye(8)[order or list(range(8))]


def pool_boxes(dense: torch.Tensor, boxes: list[torch.Tensor], image_size: tuple[int, int]) -> torch.Tensor:
    return roi_align(dense, boxes, (1, 1), spatial_scale=dense.shape[-1] / image_size[1], aligned=True)[:, :, 0, 0]


def pool_masks(dense: torch.Tensor, masks: list[torch.Tensor]) -> torch.Tensor:
    out = []
    for feat, m in zip(dense, masks):
        small = F.interpolate(m[:, None].float(), size=feat.shape[-2:], mode="area")[:, 0]
        out.append(torch.einsum("nhw,dhw->nd", small, feat) / small.sum((1, 2))[:, None])
    return torch.cat(out)


def scene(stuff: int, thing: int | None, box: tuple[int, int, int, int], size: int = 32):
    """An image of one stuff colour with an optional thing square; returns image, label, boxes, masks."""
    image = PALETTE[stuff][:, None, None].expand(3, size, size).clone()
    label = torch.full((size, size), stuff)
    boxes, masks, labels = [], [], []
    x0, y0, x1, y1 = box
    if thing is not None:
        image[:, y0:y1, x0:x1] = PALETTE[thing][:, None, None]
        label[y0:y1, x0:x1] = thing
        masks.append(label == thing)
        boxes.append([x0, y0, x1, y1])
        labels.append(thing)
    masks.append(label == stuff)
    boxes.append([0, 0, size, size])
    labels.append(stuff)
    return image, label, torch.tensor(boxes, dtype=torch.float), torch.stack(masks), torch.tensor(labels)


def test_zeroshot_perfect_and_deranged() -> None:
    images = torch.stack([scene(7, c, (8, 8, 24, 24))[0] for c in range(8)])
    labels = torch.arange(8)
    batches = [(images[:5], labels[:5]), (images[5:], labels[5:])]
    good = zeroshot_classification(encode_image, classifier(), batches, groups={"base": [0, 1], "novel": [2]})
    assert good["top1"] == 1.0 and good["mean_per_class_top1"] == 1.0
    assert good["base"]["num_samples"] == 2 and good["novel"]["top1"] == 1.0
    assert good["chance"] == {"top1": 1 / 8, "top5": 5 / 8}
    bad = zeroshot_classification(encode_image, classifier(DERANGED), batches)
    assert bad["top1"] == 0.0
    with pytest.raises(ConfigError, match="labels"):
        zeroshot_classification(encode_image, classifier(), [(images[:1], torch.tensor([9]))])


def test_retrieval_identity_and_shuffled_text() -> None:
    g = torch.Generator().manual_seed(0)
    colours = F.normalize(torch.randn(20, 3, generator=g), dim=1)
    images = colours[:, :, None, None].expand(20, 3, 8, 8)
    captions = [[f"image {i}", f"a picture numbered {i}"] for i in range(20)]

    def encode_text(texts, table=colours):
        return torch.stack([table[int(t.split()[-1])] for t in texts])

    batches = [(images[:7], captions[:7]), (images[7:], captions[7:])]
    res = retrieval(lambda x: x.mean((2, 3)), encode_text, batches, ks=(1, 5))
    assert res["image_to_text"] == {"R@1": 1.0, "R@5": 1.0}
    assert res["text_to_image"] == {"R@1": 1.0, "R@5": 1.0}
    assert res["num_texts"] == 40 and res["chance"]["text_to_image"]["R@1"] == pytest.approx(1 / 20)
    assert res["chance"]["image_to_text"]["R@1"] == pytest.approx(2 / 40)
    shuffled = colours[torch.roll(torch.arange(20), 1)]
    bad = retrieval(lambda x: x.mean((2, 3)), lambda t: encode_text(t, shuffled), batches, ks=(1,))
    assert bad["text_to_image"]["R@1"] == 0.0


def _seg_samples():
    specs = [(5, 0, (0, 0, 8, 8)), (6, 3, (8, 16, 24, 32)), (7, None, (0, 0, 0, 0)), (5, 4, (16, 4, 28, 16))]
    return [(img, lab) for img, lab, *_ in (scene(*s) for s in specs)]


def _logits_fn(weights: torch.Tensor):
    def fn(images: torch.Tensor) -> torch.Tensor:
        scores = torch.einsum("bdhw,cd->bchw", F.normalize(encode_dense(images), dim=1), F.normalize(weights, dim=1))
        return F.interpolate(scores, size=images.shape[-2:], mode="nearest")
    return fn


def test_segmentation_perfect_then_deranged() -> None:
    good = semantic_segmentation(_logits_fn(classifier()), _seg_samples(), 8, THINGS, STUFF)
    assert good["miou"] == 1.0 and good["pixel_acc"] == 1.0 and good["object_pixel_acc"] == 1.0
    assert good["miou_things"] == 1.0 and good["miou_stuff"] == 1.0
    bad = semantic_segmentation(_logits_fn(classifier(DERANGED)), _seg_samples(), 8, THINGS, STUFF)
    assert bad["pixel_acc"] == 0.0 and bad["miou"] == 0.0
    assert good["chance"]["pixel_acc"] == 1 / 8 and 0 < good["chance"]["miou"] < 1 / 8


def test_segmentation_rescales_logits_to_label_resolution() -> None:
    half = _logits_fn(classifier())
    res = semantic_segmentation(lambda x: half(x)[..., ::2, ::2], _seg_samples(), 8, THINGS, STUFF)
    assert res["miou"] == 1.0  # 16x16 scores upsampled to the 32x32 labels; squares align to 2 px


def test_segmentation_batching_matches_one_by_one() -> None:
    """Batches of same-size images (flushed at a size change) give exactly the per-image numbers."""
    samples = _seg_samples()
    small = scene(6, 2, (4, 4, 12, 12), size=16)[:2]
    mixed = samples[:2] + [small] + samples[2:]
    weights = torch.randn(8, 8, generator=torch.Generator().manual_seed(0))
    calls: list[int] = []

    def counting(images: torch.Tensor) -> torch.Tensor:
        calls.append(len(images))
        return _logits_fn(weights)(images)

    one = segmentation_both(_logits_fn(weights), mixed, 8, THINGS, STUFF, threshold=0.3)
    batched = segmentation_both(counting, mixed, 8, THINGS, STUFF, threshold=0.3, feed=Feed(batch_size=3))
    assert calls == [2, 1, 2]
    assert json_ready(one) == json_ready(batched)  # NaN (absent classes) compared as None
    assert 0 < one["argmax"]["pixel_acc"] < 1


def test_segmentation_with_background_threshold() -> None:
    fn = _logits_fn(classifier()[THINGS])
    res = segmentation_with_background(fn, _seg_samples(), 8, THINGS, threshold=0.5)
    # stuff pixels are equidistant to every thing colour -> probability 1/5 < 0.5 -> background
    assert res["miou"] == pytest.approx(1.0) and res["miou_stuff"] == 1.0
    never = segmentation_with_background(fn, _seg_samples(), 8, THINGS, threshold=0.0)
    assert never["miou_stuff"] == 0.0 and never["object_pixel_acc"] == 1.0
    with pytest.raises(ConfigError, match="threshold"):
        segmentation_with_background(fn, _seg_samples(), 8, THINGS, threshold=2.0)


def _region_batches():
    specs = [(5, 0, (0, 0, 12, 12)), (6, 3, (20, 20, 32, 32)), (7, 1, (0, 16, 16, 32)), (5, 4, (16, 0, 32, 16))]
    scenes = [scene(*s) for s in specs]
    return [RegionBatch(images=torch.stack([s[0] for s in part]), boxes=[s[2] for s in part],
                        masks=[s[3] for s in part], labels=[s[4] for s in part])
            for part in (scenes[:2], scenes[2:])]


@pytest.mark.parametrize("pooling", ["toy", "library"])
def test_regions_all_methods_perfect_and_deranged(pooling: str) -> None:
    """The toy poolers and clipdense.models' RoIAlign / mask pooling must both score 100 %."""
    if pooling == "library":
        from clipdense.models import pool_boxes as boxes_fn, pool_masks as masks_fn
    else:
        boxes_fn, masks_fn = pool_boxes, pool_masks
    encoders = RegionEncoders(encode_dense=encode_dense, encode_image=encode_image, input_size=(16, 16),
                              pool_boxes=boxes_fn, pool_masks=masks_fn)
    good = region_classification(classifier(), _region_batches(), THINGS, STUFF, encoders,
                                 groups={"novel": [3, 4]})
    for method in ("rois", "crops", "maskpool"):
        assert good[method]["things"] == {"top1": 1.0, "top5": 1.0}, method
        assert good[method]["stuff"]["top1"] == 1.0, method
        assert good[method]["novel"]["top1"] == 1.0
    assert good["num_regions"] == {"things": 4, "stuff": 4}
    bad = region_classification(classifier(DERANGED), _region_batches(), THINGS, STUFF, encoders)
    assert all(bad[m]["things"]["top1"] == 0.0 for m in ("rois", "crops", "maskpool"))


def test_region_mean_accuracy_hand_computed() -> None:
    """Two thing classes: class 0 has 3 regions (2 right), class 1 has 1 (wrong) -> (2/3 + 0) / 2."""
    regions = [(0, 0), (0, 0), (0, 2), (1, 0)]  # (true class, colour shown)
    images, boxes, labels = [], [], []
    for true, shown in regions:
        img, *_ = scene(7, shown, (0, 0, 32, 32))
        images.append(img)
        boxes.append(torch.tensor([[0.0, 0.0, 32.0, 32.0]]))
        labels.append(torch.tensor([true]))
    batch = RegionBatch(torch.stack(images), boxes, [torch.ones(1, 32, 32, dtype=torch.bool)] * 4, labels)
    res = region_classification(classifier(), [batch], [0, 1], [7],
                                RegionEncoders(encode_dense=encode_dense, pool_boxes=pool_boxes), methods=("rois",))
    assert res["rois"]["things"]["top1"] == pytest.approx((2 / 3 + 0) / 2)
    assert math.isnan(res["rois"]["stuff"]["top1"])  # no stuff regions: no accuracy, not zero


def test_region_accuracy_by_size_in_patches() -> None:
    """Thing regions bucketed by box side / patch (4 px): 1 patch small (shown wrong), 3 medium, 8 large."""
    regions = [(0, 2, (0, 0, 4, 4)), (1, 1, (0, 0, 12, 12)), (0, 0, (0, 0, 32, 32))]  # (true, shown, box)
    images, boxes, labels = [], [], []
    for true, shown, box in regions:
        img, *_ = scene(7, shown, box)
        images.append(img)
        boxes.append(torch.tensor([box], dtype=torch.float32))
        labels.append(torch.tensor([true]))
    batch = RegionBatch(torch.stack(images), boxes, [torch.ones(1, 32, 32, dtype=torch.bool)] * 3, labels)
    encoders = RegionEncoders(encode_dense=encode_dense, pool_boxes=pool_boxes, patch_size=4)
    res = region_classification(classifier(), [batch], [0, 1], [7], encoders, methods=("rois",))
    assert res["rois"]["things_by_size"] == {"small": 0.0, "medium": 1.0, "large": 1.0}
    assert res["num_things_by_size"] == {"small": 1, "medium": 1, "large": 1}
    unsized = RegionEncoders(encode_dense=encode_dense, pool_boxes=pool_boxes)
    assert "things_by_size" not in region_classification(classifier(), [batch], [0, 1], [7], unsized,
                                                         methods=("rois",))["rois"]


def test_expand_boxes_clips_and_region_errors() -> None:
    boxes = torch.tensor([[10.0, 10.0, 20.0, 20.0], [0.0, 0.0, 8.0, 8.0]])
    out = expand_boxes(boxes, torch.tensor([1.5, 1.5]), 32, 32)
    assert torch.equal(out, torch.tensor([[7.5, 7.5, 22.5, 22.5], [0.0, 0.0, 10.0, 10.0]]))
    with pytest.raises(ConfigError, match="pool_boxes"):
        region_classification(classifier(), _region_batches(), THINGS, STUFF,
                              RegionEncoders(encode_dense=encode_dense), methods=("rois",))
    with pytest.raises(ConfigError, match="unknown"):
        region_classification(classifier(), _region_batches(), THINGS, STUFF, RegionEncoders(), methods=("boxes",))


def test_crops_expand_thing_boxes_only() -> None:
    """Thing crops show 1.5x context (their corner is background); stuff crops are not expanded."""
    image, _, boxes, masks, labels = scene(5, 0, (10, 10, 22, 22))
    seen: list[torch.Tensor] = []

    def spy(crops: torch.Tensor) -> torch.Tensor:
        seen.append(crops)
        return encode_image(crops)

    batch = RegionBatch(image[None], [boxes], [masks], [labels])
    for expand, corner in ((1.5, PALETTE[5]), (1.0, PALETTE[0])):
        seen.clear()
        encoders = RegionEncoders(encode_image=spy, input_size=(12, 12), thing_expand=expand)
        region_classification(classifier(), [batch], THINGS, STUFF, encoders, methods=("crops",))
        thing_crop, stuff_crop = seen[0]
        assert torch.allclose(thing_crop[:, 0, 0], corner) and torch.allclose(thing_crop[:, 6, 6], PALETTE[0])
        assert stuff_crop.shape == (3, 12, 12)  # the whole-image stuff box, resized, not expanded
