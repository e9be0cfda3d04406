"""Cat-Seg's pieces against the paper's formulation: the cost volume, windowed and shifted-window spatial
aggregation, linear class aggregation that is permutation-equivariant over classes, top-K class selection."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from clipdense.errors import ConfigError
from clipdense.heads.segmentation import CatSegConfig, CatSegHead
from clipdense.heads.segmentation.aggregation import (AggregationLayer, ClassBlock, CostEmbedding, Decoder,
                                                      GuidedWindowAttention, SpatialBlock, cost_volume, region_mask)
from clipdense.heads.segmentation.catseg import UNSELECTED

sys.path.insert(0, str(Path(__file__).parent))
from segheads_toy import TINY_CATSEG  # noqa: E402


def test_cost_volume_is_the_cosine_of_every_pixel_class_and_template() -> None:
    torch.manual_seed(0)
    dense = F.normalize(torch.randn(2, 8, 3, 5), dim=1)
    text = F.normalize(torch.randn(4, 3, 8), dim=-1)
    cost = cost_volume(dense, text)
    assert cost.shape == (2, 4, 3, 3, 5)                      # B x T x P x h x w
    b, t, p, y, x = 1, 2, 1, 2, 4
    assert torch.allclose(cost[b, t, p, y, x], torch.dot(dense[b, :, y, x], text[t, p]), atol=1e-6)
    per_image = cost_volume(dense, text[None].expand(2, -1, -1, -1))
    assert torch.allclose(per_image, cost)
    embedded = CostEmbedding(3, 16)(cost)
    assert embedded.shape == (2, 4, 3, 5, 16)
    assert CostEmbedding(3, 16).conv.kernel_size == (7, 7)


@pytest.mark.parametrize("grid", [(4, 4), (5, 7), (8, 8)])
def test_aggregation_keeps_every_class_map_at_any_grid(grid: tuple[int, int]) -> None:
    torch.manual_seed(0)
    layer = AggregationLayer(dim=16, guide_dim=8, heads=2, window=4)
    x = torch.randn(2, 3, *grid, 16)
    out = layer(x, torch.randn(2, *grid, 8), torch.randn(2, 3, 8))
    assert out.shape == x.shape and torch.isfinite(out).all()
    logits = Decoder(16, 12, [8, 4], [4, 2])(out, [torch.randn(2, 12, *grid), torch.randn(2, 12, *grid)])
    assert logits.shape == (2, 3, 4 * grid[0], 4 * grid[1])


def test_shifted_window_mask_keeps_regions_and_padding_apart() -> None:
    assert region_mask(8, 8, 4, 0, torch.device("cpu")) is None         # aligned, unshifted: nothing masked
    mask = region_mask(8, 8, 4, 2, torch.device("cpu"))
    assert mask.shape == (4, 16, 16)
    assert (mask[0] == 0).all()                                          # the first window is one region
    assert (mask[-1] < 0).any()                                          # the wrapped corner mixes regions
    padded = region_mask(5, 5, 4, 0, torch.device("cpu"))               # 5 -> 8: padding never attended
    window = padded[0]                                                   # rows 0-3, cols 0-3: all real
    assert (window == 0).all()
    last = padded[-1]                                                    # rows 4-7, cols 4-7: only (4, 4) real
    assert last[0, 0] == 0 and (last[0, 1:] < 0).all()


def test_window_attention_is_plain_attention_with_guided_queries_and_keys() -> None:
    """One window covering the map: softmax((Wq[x;g])(Wk[x;g])^T / sqrt(d) + bias) Wv x, by hand."""
    torch.manual_seed(0)
    attn = GuidedWindowAttention(dim=8, guide_dim=4, heads=1, window=3)
    x, g = torch.randn(1, 1, 1, 9, 8), torch.randn(1, 1, 9, 4)
    out = attn(x, g, 3, None)
    q = x[0, 0, 0] @ attn.q.weight.T + attn.q.bias + g[0, 0] @ attn.q_guide.weight.T
    k = x[0, 0, 0] @ attn.k.weight.T + attn.k.bias + g[0, 0] @ attn.k_guide.weight.T
    v = x[0, 0, 0] @ attn.v.weight.T + attn.v.bias
    rows, cols = torch.meshgrid(torch.arange(3), torch.arange(3), indexing="ij")
    coords = torch.stack([rows.flatten(), cols.flatten()], 1)
    rel = coords[:, None] - coords[None] + 2
    bias = attn.bias_table[rel[..., 0] * 5 + rel[..., 1], 0]
    weights = ((q @ k.T) / 8 ** 0.5 + bias).softmax(-1)
    expected = (weights @ v) @ attn.proj.weight.T + attn.proj.bias
    assert torch.allclose(out[0, 0, 0], expected, atol=1e-5)


def test_class_aggregation_is_linear_attention_over_classes() -> None:
    """phi(q_i) . sum_j phi(k_j) v_j^T / (phi(q_i) . sum_j phi(k_j)), phi = elu + 1, computed by hand."""
    torch.manual_seed(0)
    block = ClassBlock(dim=6, guide_dim=3, heads=1)
    x, guide = torch.randn(1, 4, 1, 1, 6), torch.randn(1, 4, 3)
    out = block._attend(x, guide)
    tokens = x[0, :, 0, 0]
    q = F.elu(block.q(tokens) + block.q_guide(guide[0])) + 1
    k = F.elu(block.k(tokens) + block.k_guide(guide[0])) + 1
    v = block.v(tokens)
    expected = torch.stack([(q[i] @ k.T) @ v / (q[i] @ k.sum(0) + block.eps) for i in range(4)])
    assert torch.allclose(out[0, :, 0, 0], block.proj(expected), atol=1e-5)


def test_class_aggregation_is_permutation_equivariant() -> None:
    torch.manual_seed(0)
    block = ClassBlock(dim=16, guide_dim=8, heads=4)
    x, guide = torch.randn(2, 5, 3, 3, 16), torch.randn(2, 5, 8)
    order = torch.tensor([3, 0, 4, 1, 2])
    assert torch.allclose(block(x, guide)[:, order], block(x[:, order], guide[:, order]), atol=1e-5)
    spatial = SpatialBlock(16, 8, 4, window=2, shifted=True)
    image_guide = torch.randn(2, 3, 3, 8)
    assert torch.allclose(spatial(x, image_guide)[:, order], spatial(x[:, order], image_guide), atol=1e-5)


def _head(bundle, **extra) -> CatSegHead:
    torch.manual_seed(0)
    return CatSegHead(bundle.model, bundle.tokenizer, CatSegConfig(**{**TINY_CATSEG, **extra})).eval()


def test_shuffled_class_list_gives_shuffled_logits(tiny_bundle) -> None:
    head = _head(tiny_bundle)
    classes = ["red circle", "blue square", "sky", "grass", "yellow star"]
    order = [2, 4, 0, 3, 1]
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        logits = head(images, head.text_features(classes))
        shuffled = head(images, head.text_features([classes[i] for i in order]))
    assert logits.shape == (2, 5, 32, 32)                                # 8 x 8 patches, decoder x4
    assert torch.allclose(logits[:, order], shuffled, atol=1e-4)


def test_above_max_classes_each_image_keeps_its_top_classes(tiny_bundle) -> None:
    head = _head(tiny_bundle, max_classes=2)
    classes = ["red circle", "blue square", "sky", "grass"]
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        text = head.text_features(classes)
        logits = head(images, text)
        dense = F.normalize(head.dense(images).dense, dim=1)
        chosen = head.select_classes(dense, text)
        alone = head(images[:1], text[chosen[0]])
    assert chosen.shape == (2, 2)
    kept = (logits != UNSELECTED).all(-1).all(-1)
    assert kept.sum(1).tolist() == [2, 2]
    assert torch.allclose(logits[0, chosen[0]], alone[0], atol=1e-4)   # as if only those classes were named


def test_any_input_size_and_bad_configs(tiny_bundle) -> None:
    head = _head(tiny_bundle)
    with torch.no_grad():
        scores = head.segment_logits(torch.randn(1, 3, 72, 104), ["sky", "grass"])
    assert scores.shape == (1, 2, 72, 104)
    with pytest.raises(ConfigError, match="divisible"):
        _head(tiny_bundle, hidden_dim=30, heads=4)
    with pytest.raises(ConfigError, match="guidance_layers"):
        _head(tiny_bundle, guidance_layers=[0, 7])
    with pytest.raises(ConfigError, match="templates"):
        head(torch.randn(1, 3, 64, 64), torch.randn(2, 3, 64))
