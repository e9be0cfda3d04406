"""Detector heads: the ViT pyramid's shapes, F-ViT's taps, the score ensemble on hand-computed cases, detection
selection, the head file (backbone binding) and config errors."""
from __future__ import annotations

import math

import open_clip
import pytest
import torch
from open_clip.model import CLIPTextCfg, CLIPVisionCfg

from clipdense.errors import ConfigError, ModelLoadError
from clipdense.heads import load_head, read_head_info, save_head
from clipdense.heads.detection import (DetectorConfig, FViTDetector, ViLDDetector, default_taps, ensemble_scores,
                                       select_detections)
from clipdense.models import Bundle

SMALL = dict(fpn_channels=16, head_channels=16, fc_channels=32, rpn_post_nms_test=50, roi_batch=32, rpn_batch=32)


def vit_clip(layers: int, patch: int, side: int, seed: int = 0) -> Bundle:
    """A random-init open_clip CLIP with a ``layers``-block ViT image tower (narrow, so it builds in a blink)."""
    torch.manual_seed(seed)
    model = open_clip.CLIP(32, CLIPVisionCfg(layers=layers, width=32, head_width=16, patch_size=patch,
                                             image_size=side),
                           CLIPTextCfg(context_length=16, vocab_size=49408, width=32, heads=2, layers=1))
    tokenizer = open_clip.get_tokenizer("ViT-B-16", context_length=16)
    return Bundle(model.eval(), tokenizer, None, f"vit-{layers}x{patch}", None, (side, side))


def test_default_taps_follow_fvit():
    assert default_taps(12) == [3, 5, 7, 11]          # CLIPSelf's F-ViT, ViT-B/16
    assert default_taps(24) == [7, 11, 15, 23]        # ViT-L/14
    assert default_taps(3) == [0, 1, 1, 2]            # a short tower repeats blocks
    assert default_taps(1) == [0, 0, 0, 0]


@pytest.mark.parametrize("layers,patch,side", [(12, 16, 64), (3, 8, 64), (2, 14, 112)])
def test_pyramid_shapes(layers, patch, side):
    bundle = vit_clip(layers, patch, side)
    detector = FViTDetector(bundle, DetectorConfig(image_size=128, **SMALL), ["a thing"])
    assert detector.config.taps == default_taps(layers)
    images = [torch.rand(3, 96, 128), torch.rand(3, 64, 64)]
    features = detector.features(images)                     # eval mode: longest side resized to 128
    height, width = features.images.tensors.shape[-2:]
    assert (height, width) == (96, 128)                       # padded to a multiple of the largest stride (32)
    shapes = {name: tuple(m.shape) for name, m in features.pyramid.items()}
    assert shapes == {"0": (2, 16, 24, 32), "1": (2, 16, 12, 16), "2": (2, 16, 6, 8), "3": (2, 16, 3, 4),
                      "pool": (2, 16, 2, 2)}
    assert features.dense.shape == (2, 32, height // patch, width // patch)   # beside the pyramid, never in it
    pool = detector.roi_heads.box_roi_pool     # a box the size of a CLIP input is read at the patch stride
    assert (pool.canonical_scale, pool.canonical_level) == (side, {8: 3, 14: 4, 16: 4}[patch])


def test_pyramid_levels_are_fvit_ops():
    detector = FViTDetector(vit_clip(12, 16, 64), DetectorConfig(image_size=64, **SMALL), ["a"])
    levels = detector.pyramid.levels      # F-ViT's fpn1..fpn4: stride 16 patches -> 4, 8, 16, 32
    assert [type(m).__name__ for m in levels[0]] == ["ConvTranspose2d", "GroupNorm", "GELU", "ConvTranspose2d"]
    assert [type(m).__name__ for m in levels[1]] == ["ConvTranspose2d"]
    assert type(levels[2]).__name__ == "Identity" and levels[3].kernel_size == levels[3].stride == 2
    assert detector.rpn.head.conv[0][0].in_channels == 16 and set(detector.roi_heads.box_roi_pool.featmap_names) \
        == {"0", "1", "2", "3"}                               # RoIs pool the 4 levels, the RPN also sees 'pool'


def test_ensemble_formula_hand_computed():
    s = torch.tensor([[0.5, 0.2, 0.1]])
    v = torch.tensor([[0.25, 0.5, 0.8]])
    novel = torch.tensor([False, True, True])
    out = ensemble_scores(s, v, novel, alpha=0.1, beta=0.8)
    # base: 0.5^0.9 * 0.25^0.1 = 0.535887 * 0.870551; novel: 0.2^0.2 * 0.5^0.8 = 0.724780 * 0.574349,
    # 0.1^0.2 * 0.8^0.8 = 0.630957 * 0.836512
    assert out[0].tolist() == pytest.approx([0.466516, 0.416277, 0.527803], rel=1e-5)
    vild = ensemble_scores(s, v, novel, alpha=1 / 3, beta=2 / 3)     # ViLD: geometric mean, weight 2/3
    assert vild[0, 0] == pytest.approx((0.5 ** 2 * 0.25) ** (1 / 3)) and \
        vild[0, 1] == pytest.approx((0.2 * 0.5 ** 2) ** (1 / 3))


def test_select_detections_per_class_nms_and_limit():
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]])
    scores = torch.tensor([[0.9, 0.1], [0.8, 0.7], [0.05, 0.6]])   # background already dropped
    out = select_detections(boxes, scores, (64, 64), score_threshold=0.2, nms=0.4, limit=100)
    got = sorted(zip(out["labels"].tolist(), [round(s, 2) for s in out["scores"].tolist()]))
    assert got == [(0, 0.9), (1, 0.6), (1, 0.7)]          # box 1 / class 0 suppressed by box 0; class 1 kept
    assert len(select_detections(boxes, scores, (64, 64), 0.2, 0.4, limit=2)["scores"]) == 2
    clipped = select_detections(torch.tensor([[-5.0, -5, 70, 70]]), torch.tensor([[0.9]]), (64, 64), 0.0, 0.4, 10)
    assert clipped["boxes"].tolist() == [[0.0, 0.0, 64.0, 64.0]]


def test_class_logits_background_is_column_zero():
    detector = ViLDDetector(vit_clip(2, 8, 32), DetectorConfig(image_size=64, temperature=10.0, **SMALL), ["a"])
    text = torch.nn.functional.normalize(torch.randn(3, 32), dim=-1)
    embedding = torch.cat([detector.background_embedding[None], text[1:2]])
    logits = detector.class_logits(embedding, text)
    assert logits.shape == (2, 4)
    assert logits[0].argmax() == 0 and logits[1].argmax() == 2
    assert logits[1, 2].item() == pytest.approx(10.0, rel=1e-4)    # temperature x cosine 1
    assert isinstance(detector.background_embedding, torch.nn.Parameter)   # ViLD learns it; F-ViT's is fixed
    fvit = FViTDetector(vit_clip(2, 8, 32), DetectorConfig(image_size=64, **SMALL), ["a"])
    assert not isinstance(fvit.background_embedding, torch.nn.Parameter)
    assert math.exp(fvit.logit_scale.item()) == pytest.approx(50.0) and fvit.logit_scale.requires_grad


def test_head_file_round_trip_and_refuses_another_backbone(tmp_path):
    bundle = vit_clip(3, 8, 32, seed=0)
    config = DetectorConfig(image_size=64, novel=["zebra"], **SMALL)
    detector = FViTDetector(bundle, config, ["cat", "dog"])
    torch.nn.init.normal_(detector.roi_heads.box_predictor.embed.weight)
    path = save_head(detector, tmp_path / "det.safetensors", bundle)
    info = read_head_info(path)
    assert info.kind == "detector/fvit" and info.classes == ["cat", "dog"] and info.config["novel"] == ["zebra"]
    loaded = load_head(path, bundle)
    assert type(loaded) is FViTDetector and loaded.config == detector.config
    assert torch.equal(loaded.roi_heads.box_predictor.embed.weight, detector.roi_heads.box_predictor.embed.weight)
    images = [torch.rand(3, 40, 48)]
    a, b = detector.eval().detect(images, ["cat", "zebra"]), loaded.detect(images, ["cat", "zebra"])
    assert torch.equal(a[0]["scores"], b[0]["scores"]) and torch.equal(a[0]["boxes"], b[0]["boxes"])
    with pytest.raises(ModelLoadError, match="other weights of the same model"):
        load_head(path, vit_clip(3, 8, 32, seed=1))


def test_config_errors():
    bundle = vit_clip(3, 8, 32)
    with pytest.raises(ConfigError, match="not blocks of this 3-block tower"):
        FViTDetector(bundle, DetectorConfig(taps=[0, 1, 2, 3], image_size=64, **SMALL), ["a"])
    with pytest.raises(ConfigError, match="powers of two"):
        FViTDetector(bundle, DetectorConfig(strides=[4, 8, 12, 32], image_size=64, **SMALL), ["a"])
    with pytest.raises(ConfigError, match="anchor_sizes"):
        FViTDetector(bundle, DetectorConfig(anchor_sizes=[32, 64], image_size=64, **SMALL), ["a"])
    with pytest.raises(ConfigError, match="image_size -3: expected a side in pixels"):
        FViTDetector(bundle, DetectorConfig(image_size=-3, **SMALL), ["a"])
    with pytest.raises(ConfigError, match="unknown key"):
        DetectorConfig.from_json({"image_size": 64, "colour": "red"})
