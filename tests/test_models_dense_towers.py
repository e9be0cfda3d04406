"""Dense forward on timm towers inside open_clip (EVA02, SigLIP): equality with the models' own tokens,
CLIPSelf's EVA value path, MaskCLIP's treatment of the MAP head, any size, block maps, unsupported blocks."""
from __future__ import annotations

import sys
from pathlib import Path
from unittest import mock

import pytest
import torch
import torch.nn.functional as F

import clipdense as cd
from clipdense.models import tower_facts
from clipdense.models import towers as towers_module

sys.path.insert(0, str(Path(__file__).parent))
from dense_towers import tiny_timm_clip  # noqa: E402

KINDS = ("eva02", "siglip")


@pytest.fixture(scope="module", params=KINDS)
def timm_bundle(request: pytest.FixtureRequest) -> cd.models.Bundle:
    return tiny_timm_clip(request.param)


def _map_value_path_by_hand(pool, tokens):
    """MaskCLIP on an attention pool: each token's value (kv laid out as (2, heads, head_dim)) through the
    output projection, then the pool's residual MLP."""
    batch, length, width = tokens.shape
    kv = pool.kv(tokens).reshape(batch, length, 2, pool.num_heads, pool.head_dim)
    values = kv[:, :, 1].reshape(batch, length, width)
    out = pool.proj(values)
    return out + pool.mlp(pool.norm(out))


def _to_joint_by_hand(visual, normed_patches):
    """The model's own head on normed patch tokens (MAP heads by MaskCLIP's treatment)."""
    trunk = visual.trunk
    x = normed_patches if trunk.attn_pool is None else _map_value_path_by_hand(trunk.attn_pool, normed_patches)
    return visual.head(trunk.head(trunk.fc_norm(x)))


def _model_tokens(visual, images):
    """Final patch tokens as the model computes them: open_clip's forward_intermediates (timm's, with the
    final norm) -> the head."""
    out = visual.forward_intermediates(images, indices=[-1], normalize_intermediates=True, output_fmt="NLC")
    return out["image_features"], _to_joint_by_hand(visual, out["image_intermediates"][0])


@torch.no_grad()
def test_vanilla_equals_the_models_own_tokens(timm_bundle):
    model, images = timm_bundle.model, torch.randn(2, 3, 64, 64)
    out = cd.dense_forward(model, images, "vanilla")
    pooled, tokens = _model_tokens(model.visual, images)
    torch.testing.assert_close(out.image_embed, model.encode_image(images), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.image_embed, pooled, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.dense.flatten(2).transpose(1, 2), tokens, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
@torch.no_grad()
def test_vanilla_at_another_size_equals_a_model_built_for_it(kind):
    """At 48x80 our tokens equal those of the same weights built for 48x80 (position table resized by
    our convention; EVA's rotary table built by timm for the 6x10 grid)."""
    small, wide = tiny_timm_clip(kind), tiny_timm_clip(kind, seed=1, side=(48, 80))
    state = small.model.state_dict()
    key = "visual.trunk.pos_embed"
    prefix = small.model.visual.trunk.num_prefix_tokens
    grid = state[key][0, prefix:].reshape(1, 8, 8, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(6, 10), mode="bicubic", align_corners=False)
    state[key] = torch.cat([state[key][:, :prefix], grid.flatten(2).transpose(1, 2)], dim=1)
    wide.model.load_state_dict(state)
    images = torch.randn(2, 3, 48, 80)
    out = cd.dense_forward(small.model, images, "vanilla")
    pooled, tokens = _model_tokens(wide.model.visual, images)
    assert out.dense.shape[-2:] == (6, 10)
    torch.testing.assert_close(out.image_embed, pooled, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.dense.flatten(2).transpose(1, 2), tokens, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_layers_equal_timm_forward_intermediates(timm_bundle):
    model, images = timm_bundle.model, torch.randn(2, 3, 64, 64)
    out = cd.dense_forward(model, images, "maskclip", layers=(0, -1, 1))
    ref = model.visual.trunk.forward_intermediates(images, indices=[0, 1, 2], intermediates_only=True)
    assert [m.shape for m in out.layers] == [(2, 48, 8, 8)] * 3
    for ours, theirs in zip(out.layers, [ref[0], ref[2], ref[1]]):
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def _last_block_input(trunk, images):
    """Tokens entering the last block (prefix + patches), from timm's own forward_intermediates."""
    with_prefix = bool(trunk.num_prefix_tokens)
    out = trunk.forward_intermediates(images, indices=[len(trunk.blocks) - 2], intermediates_only=True,
                                      output_fmt="NLC", return_prefix_tokens=with_prefix)
    return torch.cat([out[0][1], out[0][0]], dim=1) if with_prefix else out[0]


@torch.no_grad()
def test_eva_maskclip_follows_clipself_forward_without_attn():
    """CLIPSelf's EVA code: ``x = x + proj(inner_ln(v_proj(norm1(x))))`` then ``x = x + mlp(norm2(x))``,
    patches -> norm -> head."""
    bundle = tiny_timm_clip("eva02")
    visual, images = bundle.model.visual, torch.randn(2, 3, 64, 64)
    trunk, block = visual.trunk, visual.trunk.blocks[-1]
    x = _last_block_input(trunk, images)
    attn = block.attn
    v = F.linear(block.norm1(x), attn.v_proj.weight, attn.v_proj.bias)
    x = x + attn.proj(attn.norm(v))
    x = x + block.mlp(block.norm2(x))
    expected = visual.head(trunk.head(trunk.norm(x[:, 1:])))
    out = cd.dense_forward(bundle.model, images, "maskclip")
    torch.testing.assert_close(out.dense.flatten(2).transpose(1, 2), expected, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_siglip_maskclip_by_hand():
    bundle = tiny_timm_clip("siglip")
    visual, images = bundle.model.visual, torch.randn(2, 3, 64, 64)
    trunk, block = visual.trunk, visual.trunk.blocks[-1]
    x = _last_block_input(trunk, images)
    attn = block.attn
    qkv = attn.qkv(block.norm1(x)).reshape(2, 64, 3, 48)
    x = x + block.ls1(attn.proj(qkv[:, :, 2]))
    x = x + block.ls2(block.mlp(block.norm2(x)))
    expected = _to_joint_by_hand(visual, trunk.norm(x))
    out = cd.dense_forward(bundle.model, images, "maskclip")
    torch.testing.assert_close(out.dense.flatten(2).transpose(1, 2), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mode", sorted(cd.DENSE_MODES))
@torch.no_grad()
def test_every_mode_runs_and_keeps_the_image_embedding(timm_bundle, mode):
    model, images = timm_bundle.model, torch.randn(2, 3, 48, 72)
    out = cd.dense_forward(model, images, mode)
    facts = tower_facts(model)
    assert out.dense.shape == (2, facts.output_dim, 6, 9) and torch.isfinite(out.dense).all()
    vanilla = cd.dense_forward(model, images, "vanilla")
    torch.testing.assert_close(out.image_embed, vanilla.image_embed, atol=1e-6, rtol=1e-5)
    if mode != "vanilla":
        assert (F.normalize(out.dense, dim=1) - F.normalize(vanilla.dense, dim=1)).abs().max() > 1e-3


def test_tower_facts_of_timm_towers():
    eva, siglip = tower_facts(tiny_timm_clip("eva02").model), tower_facts(tiny_timm_clip("siglip").model)
    assert (eva.width, eva.output_dim, eva.patch_size, eva.image_size, eva.num_blocks, eva.num_prefix_tokens) == \
        (48, 32, (8, 8), (64, 64), 3, 1)
    assert (siglip.output_dim, siglip.num_prefix_tokens) == (48, 0)


def test_gradient_checkpointing_on_a_timm_tower_keeps_gradients():
    bundle = tiny_timm_clip("eva02")
    visual, images = bundle.model.visual, torch.randn(2, 3, 48, 64)

    def grads() -> list[torch.Tensor]:
        bundle.model.zero_grad()
        out = cd.dense_forward(bundle.model, images, "maskclip", layers=(0,))
        (out.dense.square().mean() + out.layers[0].mean() + out.image_embed.sum()).backward()
        return [p.grad.clone() for p in visual.parameters() if p.grad is not None]

    plain = grads()
    visual.set_grad_checkpointing(True)
    with mock.patch.object(towers_module, "checkpoint", side_effect=towers_module.checkpoint) as spy:
        checkpointed = grads()
    assert spy.call_count == 2  # blocks 0 and 1 (the class token's path through the last block is not)
    for a, b in zip(plain, checkpointed, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


@torch.no_grad()
def test_a_block_that_cannot_be_taken_apart_allows_vanilla_only():
    """Post-norm EVA blocks: vanilla equals the model's tokens; other modes fail with one line saying why."""
    bundle = tiny_timm_clip("eva02", use_post_norm=True)
    images = torch.randn(1, 3, 64, 64)
    out = cd.dense_forward(bundle.model, images, "vanilla")
    _, tokens = _model_tokens(bundle.model.visual, images)
    torch.testing.assert_close(out.dense.flatten(2).transpose(1, 2), tokens, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.image_embed, bundle.model.encode_image(images), atol=1e-5, rtol=1e-5)
    with pytest.raises(cd.ConfigError, match="maskclip.*EvaBlockPostNorm") as info:
        cd.dense_forward(bundle.model, images, "maskclip")
    assert "\n" not in str(info.value)
