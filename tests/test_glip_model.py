"""GLIP (issue 26): deep fusion, the token-level focal loss, FCOS matching, the head and its objective, grounding
and chunked prompt detection."""
from __future__ import annotations

import math

import pytest
import torch

from clipdense.data.phrases import noun_phrase_spans, token_count
from clipdense.data.prompts import class_prompt
from clipdense.errors import ConfigError
from clipdense.heads.grounding import BiAttention, FusionLayer, GLIPConfig, GLIPHead
from clipdense.heads.grounding.loss import centerness_target, location_boxes, match_locations, token_focal_loss

TINY = dict(channels=32, layers=2, fusion_dim=32, fusion_heads=4, layer_scale=0.1, image_size=64)


def _tokens(batch: int = 2, length: int = 7, dim: int = 16, pad: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    text = torch.randn(batch, length, dim)
    mask = torch.ones(batch, length, dtype=torch.bool)
    mask[:, length - pad:] = False
    return text, mask


def test_bi_attention_is_permutation_equivariant_in_tokens():
    torch.manual_seed(0)
    layer = BiAttention(24, 16, 32, 4, layer_scale=0.5)
    image = torch.randn(2, 30, 24)
    text, mask = _tokens()
    perm = torch.randperm(text.shape[1])
    image_a, text_a = layer(image, text, mask)
    image_b, text_b = layer(image, text[:, perm], mask[:, perm])
    assert torch.allclose(image_a, image_b, atol=1e-5)
    assert torch.allclose(text_a[:, perm], text_b, atol=1e-5)
    assert not torch.allclose(image_a, image, atol=1e-3)    # it does fuse


def test_fusion_layer_is_permutation_equivariant_in_tokens_and_ignores_padding():
    torch.manual_seed(1)
    layer = FusionLayer(24, 16, 32, 4, layer_scale=0.5, fuse=True).eval()
    levels = [torch.randn(2, 24, 8, 8), torch.randn(2, 24, 4, 4)]
    text, mask = _tokens()
    perm = torch.randperm(text.shape[1])
    levels_a, text_a = layer(levels, text, mask)
    levels_b, text_b = layer(levels, text[:, perm], mask[:, perm])
    for a, b in zip(levels_a, levels_b):
        assert torch.allclose(a, b, atol=1e-5)
    assert torch.allclose(text_a[:, perm], text_b, atol=1e-5)
    changed = text.clone()
    changed[:, -2:] = 100.0    # padded tokens: whatever they hold, the image side does not hear them
    levels_c, _ = layer(levels, changed, mask)
    assert all(torch.allclose(a, c, atol=1e-5) for a, c in zip(levels_a, levels_c))


def test_layer_scale_starts_the_fusion_near_identity():
    layer = BiAttention(8, 8, 8, 2, layer_scale=1e-4)
    image, text = torch.randn(1, 5, 8), torch.randn(1, 3, 8)
    out_image, out_text = layer(image, text, torch.ones(1, 3, dtype=torch.bool))
    assert (out_image - image).abs().max() < 1e-2 and (out_text - text).abs().max() < 1e-2


def test_token_focal_loss_equals_a_hand_computed_case():
    logits = torch.tensor([[2.0, -1.0, 0.5]])
    targets = torch.tensor([[1.0, 0.0, 1.0]])
    mask = torch.tensor([[True, True, False]])     # the third token is padding: not counted
    p1, p2 = 1 / (1 + math.exp(-2.0)), 1 / (1 + math.exp(1.0))
    expected = 0.25 * (1 - p1) ** 2 * -math.log(p1) + 0.75 * p2 ** 2 * -math.log(1 - p2)
    assert token_focal_loss(logits, targets, mask, 0.25, 2.0).item() == pytest.approx(expected, rel=1e-5)


def test_fcos_matching_uses_centre_sampling_and_the_smallest_box():
    anchors = location_boxes([(4, 4)], [8], torch.device("cpu"))      # centres 4, 12, 20, 28
    assert anchors[5].tolist() == [8, 8, 16, 16]
    big = torch.tensor([[0.0, 0.0, 32.0, 32.0]])
    small = torch.tensor([[8.0, 8.0, 24.0, 24.0]])
    index = match_locations(anchors, [16], [8], torch.cat([big, small]), radius=1.5)
    # within 1.5 strides (12 px) of the centre (16, 16): centres 12 and 20 on each axis; the small box wins there
    centre = {5, 6, 9, 10}
    assert {i for i in range(16) if index[i] >= 0} == centre and all(index[i] == 1 for i in centre)
    assert match_locations(anchors, [16], [8], torch.zeros(0, 4), 1.5).eq(-1).all()


def test_centerness_target_hand_cases():
    anchors = torch.tensor([[15.0, 15.0, 17.0, 17.0], [0.0, 0.0, 2.0, 2.0]])     # centres (16, 16) and (1, 1)
    boxes = torch.tensor([[0.0, 0.0, 32.0, 32.0], [0.0, -1.0, 4.0, 3.0]])
    # second: l=1, r=3, t=2, b=2 -> sqrt(1/3 * 1)
    assert centerness_target(anchors, boxes).tolist() == pytest.approx([1.0, math.sqrt(1 / 3)])


def test_noun_phrase_spans():
    sentence = "a red circle left of two blue stars on the grass"
    spans = noun_phrase_spans(sentence)
    assert [sentence[s:e] for s, e in spans] == ["red circle", "blue stars", "grass"]
    assert noun_phrase_spans("it is on the left") == []


@pytest.fixture(scope="module")
def head(bundle):
    torch.manual_seed(0)
    return GLIPHead(bundle, GLIPConfig(**TINY))


def test_glip_head_shapes_and_finite_losses(head):
    c = head.config
    assert c.context == 32 and c.strides == [8, 16, 32] and len(head.layers) == 2
    images = [torch.rand(3, 64, 64), torch.rand(3, 64, 48)]
    ids = head.tokenize(["a red circle.", "two blue stars and a house"])
    pred, _ = head(images, ids)
    locations = 8 * 8 + 4 * 4 + 2 * 2 + 1
    assert pred.logits.shape == (2, locations, 32) and pred.distances.shape == (2, locations, 4)
    positive = torch.zeros(1, 32)
    positive[0, 1:4] = 1
    targets = [{"boxes": torch.tensor([[10.0, 10.0, 40.0, 40.0]]), "positive": positive},
               {"boxes": torch.zeros(0, 4), "positive": torch.zeros(0, 32)}]
    losses = head.losses(images, ids, targets)
    assert set(losses) == {"loss_align", "loss_giou", "loss_centerness"}
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert head.region.weight.grad is not None and head.bundle.model.visual.conv1.weight.grad is None


@pytest.mark.parametrize("count", [60, pytest.param(500, marks=pytest.mark.slow)])
def test_prompt_chunks_fit_the_context_and_merge_like_separate_prompts(head, count):
    from clipdense.tasks.ground import glip_detect, ground_spans, prompt_chunks
    from torchvision.ops import batched_nms

    names = [f"shape number {i}" for i in range(count)]
    chunks = prompt_chunks(head, names)
    assert sorted(i for chunk in chunks for i in chunk) == list(range(count)) and len(chunks) > 1
    for chunk in chunks:
        text, _ = class_prompt([names[i] for i in chunk])
        assert token_count(head.bundle.tokenizer, [text])[0] <= head.config.context - 2
    torch.manual_seed(3)
    image = torch.rand(3, 64, 64)
    merged = glip_detect(head, [image], names)[0]
    boxes, scores, labels = [], [], []
    for chunk in chunks:   # each prompt scored alone, by hand
        text, spans = class_prompt([names[i] for i in chunk])
        found = ground_spans(head, [image], [text], [[(s,) for s in spans]])[0]
        boxes.append(found["boxes"])
        scores.append(found["scores"])
        labels.append(torch.tensor(chunk)[found["labels"]])
    boxes, scores, labels = torch.cat(boxes), torch.cat(scores), torch.cat(labels)
    keep = batched_nms(boxes, scores, labels, head.config.nms)[:head.config.detections]
    assert torch.equal(merged.labels, labels[keep]) and torch.allclose(merged.scores, scores[keep])
    # a vocabulary that fits one prompt is that one prompt
    few = ["red circle", "blue star"]
    assert prompt_chunks(head, few) == [[0, 1]]
    single = ground_spans(head, [image], ["red circle. blue star."], [[((0, 10),), ((12, 21),)]])[0]
    alone = glip_detect(head, [image], few)[0]
    assert torch.equal(alone.labels, single["labels"]) and torch.allclose(alone.scores, single["scores"])


def test_ground_refuses_bad_sentences_and_spans(head, bundle):
    import clipdense as cd

    image = torch.rand(3, 64, 64)
    with pytest.raises(ConfigError, match="empty sentence"):
        cd.ground(bundle, image, "   ", head=head)
    with pytest.raises(ConfigError, match="no noun phrase"):
        cd.ground(bundle, image, "it is on the left", head=head)
    with pytest.raises(Exception, match="outside the caption"):
        cd.ground(bundle, image, "a red circle", head=head, spans=[[(2, 40)]])
    found = cd.ground(bundle, [image, image], ["a red circle", "two blue stars and a house"], head=head)
    assert [len(g.phrases) for g in found] == [1, 2]
    assert [p.text for p in found[1].phrases] == ["blue stars", "house"]
    for phrase in found[1].phrases:
        assert phrase.boxes.shape[1:] == (4,) and len(phrase.boxes) == len(phrase.scores)
        assert torch.all(phrase.scores[:-1] >= phrase.scores[1:])


def test_glip_head_file_is_refused_on_another_backbone(head, bundle, tmp_path):
    import clipdense as cd
    from clipdense.heads import load_head, save_head

    path = tmp_path / "glip.safetensors"
    save_head(head, path, bundle)
    again = load_head(path, bundle)
    assert isinstance(again, GLIPHead) and again.config == head.config
    other = cd.load_model("tiny-vit-s8", device="cpu")
    with pytest.raises(Exception, match="trained on|fingerprint|another|other"):
        load_head(path, other)
