"""The panoptic mask generator (heads/segmentation/panoptic.py, mask_decoder.py) and its objective
(objectives/mask2former.py): shapes, Mask2Former's masked attention, the seen vocabulary and the transform, only
the head trains, and a saved head reloads to the same predictions."""
from __future__ import annotations

import pytest
import torch

from clipdense.data.readers import DataInfo
from clipdense.data.sample import Sample
from clipdense.errors import ConfigError
from clipdense.heads import load_head, save_head
from clipdense.heads.segmentation import PanopticConfig, PanopticHead, PanopticResult
from clipdense.heads.segmentation.mask_decoder import DecoderLayer, MaskedAttentionDecoder
from clipdense.objectives import build_objective
from clipdense.objectives.mask2former import panoptic_vocabulary

TINY = dict(hidden_dim=32, mask_dim=32, queries=6, decoder_layers=3, heads=4, ffn_dim=64)
CLASSES = ("circle", "square", "star", "sky", "grass")
INFO = DataInfo(classes=CLASSES, isthing=(True, True, True, False, False), novel=("star",))


def test_head_shapes_and_one_prediction_per_layer(tiny_bundle) -> None:
    torch.manual_seed(0)
    head = PanopticHead(tiny_bundle, PanopticConfig(**TINY), ["circle", "sky"])
    assert head.config.taps == [0, 1, 1, 2] and head.config.image_size == 64       # F-ViT's taps, the tower's side
    out = head(torch.randn(2, 3, 64, 64))
    assert len(out.predictions) == 1 + 3
    assert out.predictions[-1].masks.shape == (2, 6, 16, 16)                        # stride 4
    assert out.predictions[-1].embedding.shape == (2, 6, 64)                        # the CLIP's joint width
    logits = head.class_logits(out.predictions[-1].embedding, head.text_embeddings(["circle", "sky"]))
    assert logits.shape == (2, 6, 3)                                                # classes + no object


def test_masked_cross_attention_ignores_memory_outside_the_mask() -> None:
    torch.manual_seed(0)
    layer = DecoderLayer(16, 2, 32).eval()
    queries, pos = torch.randn(1, 3, 16), torch.randn(1, 3, 16)
    memory, memory_pos = torch.randn(1, 10, 16), torch.randn(1, 10, 16)
    blocked = torch.zeros(1, 3, 10, dtype=torch.bool)
    blocked[:, :, 5:] = True                                      # every query may look at positions 0-4 only
    blocked = blocked.repeat_interleave(2, 0)
    changed = memory.clone()
    changed[:, 5:] = torch.randn(1, 5, 16) * 10
    with torch.no_grad():
        same = torch.allclose(layer(queries, pos, memory, memory_pos, blocked),
                              layer(queries, pos, changed, memory_pos, blocked), atol=1e-6)
        differs = not torch.allclose(layer(queries, pos, memory, memory_pos, None),
                                     layer(queries, pos, changed, memory_pos, None), atol=1e-3)
    assert same and differs


def test_a_query_without_foreground_attends_everywhere() -> None:
    torch.manual_seed(0)
    decoder = MaskedAttentionDecoder(16, 2, 1, 2, 32, 1, 8, 16)
    features = torch.randn(1, 16, 8, 8)
    with torch.no_grad():
        decoder.mask_embed.layers[-1].weight.zero_()
        decoder.mask_embed.layers[-1].bias.fill_(-1.0)            # every mask logit < 0 -> no foreground
        _, blocked = decoder.predict(decoder.query_feat.weight[None], features * 0 + 1, (4, 4))
    assert blocked.shape == (1 * 2, 2, 16) and not blocked.any()


def test_bad_architectures_are_one_line_errors(tiny_bundle) -> None:
    for bad in ({"heads": 5}, {"alpha": 1.5}, {"taps": [0, 7, 1, 2]}, {"image_size": 70}, {"queries": 0}):
        with pytest.raises(ConfigError):
            PanopticHead(tiny_bundle, PanopticConfig(**{**TINY, **bad}), ["circle"])


def test_seen_vocabulary_drops_novel_and_excluded_classes() -> None:
    seen, stuff, lookup = panoptic_vocabulary(INFO, ["square"])
    assert seen == ["circle", "sky", "grass"] and stuff == ["sky", "grass"]
    assert lookup.tolist() == [0, -1, -1, 1, 2]
    with pytest.raises(ConfigError):
        panoptic_vocabulary(INFO, ["moon"])


def _sample() -> Sample:
    from PIL import Image
    masks = torch.zeros(4, 32, 32, dtype=torch.bool)
    masks[0, :8, :8] = True                                       # circle
    masks[1, 20:, 20:] = True                                     # star (novel: dropped)
    masks[2, 8:16, :] = True                                      # sky, two pieces: merged
    masks[3, 24:, :8] = True
    return Sample(Image.new("RGB", (32, 32)), "s", boxes=torch.tensor([[0, 0, 8, 8], [20, 20, 32, 32],
                                                                        [0, 8, 32, 16], [0, 24, 8, 32]]).float(),
                  labels=torch.tensor([0, 2, 3, 3]), masks=masks)


def test_transform_keeps_seen_segments_and_merges_stuff(bundle) -> None:
    objective = build_objective("mask2former", bundle, {**TINY, "jitter": [1.0, 1.0], "hflip": False,
                                                        "max_segments": 5}, INFO)
    out = objective.sample_transform()(_sample(), torch.Generator().manual_seed(0))
    assert out["image"].shape == (3, 64, 64) and out["labels"].tolist() == [0, 2, -1, -1, -1]
    assert int(out["masks"][0].sum()) == 16 * 16                  # 8 x 8 at twice the size
    assert int(out["masks"][1].sum()) == (8 * 32 + 8 * 8) * 4     # the two sky pieces, one target


def test_only_the_head_trains_and_the_loss_falls(bundle) -> None:
    torch.manual_seed(0)
    objective = build_objective("mask2former", bundle, {**TINY, "jitter": [1.0, 1.0], "points": 256}, INFO)
    transform = objective.sample_transform()
    batch = objective.collate([transform(_sample(), torch.Generator().manual_seed(i)) for i in range(2)])
    trainable = dict(objective.named_trainable_parameters())
    assert trainable and all(name.startswith("head.") for name in trainable)
    optimizer = torch.optim.AdamW(trainable.values(), lr=1e-3)
    losses = []
    for _ in range(8):
        out = objective(batch)
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        losses.append(float(out["loss"].detach()))
    assert all(p.grad is None for p in bundle.model.parameters())
    assert losses[-1] < losses[0] and {"loss_ce", "loss_mask", "loss_dice"} <= set(out)


def test_saved_head_reloads_to_identical_predictions(tiny_bundle, tmp_path) -> None:
    torch.manual_seed(0)
    head = PanopticHead(tiny_bundle, PanopticConfig(**TINY, stuff=["sky"]), ["circle", "sky"])
    save_head(head, tmp_path / "head.safetensors", tiny_bundle)
    loaded = load_head(tmp_path / "head.safetensors", tiny_bundle)
    assert isinstance(loaded, PanopticHead) and loaded.classes == ["circle", "sky"]
    image = torch.rand(3, 40, 56)
    classes = ["circle", "sky", "moon"]
    first, second = head.query_probabilities(image, classes), loaded.query_probabilities(image, classes)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert first[1].shape == (6, 40, 56) and torch.allclose(first[0].sum(-1), torch.ones(6))
    result = loaded.panoptic(image, classes)
    assert isinstance(result, PanopticResult) and result.ids.shape == (40, 56)
    assert loaded.thing_flags(classes).tolist() == [True, False, True]
