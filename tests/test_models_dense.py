"""Dense forward on open_clip ViTs: equality with open_clip for vanilla and for block maps, the official
SCLIP formulation, a distinguishing property per mode, mode objects and their registry."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar
from unittest import mock

import open_clip
import pytest
import torch
import torch.nn.functional as F
from open_clip.model import CLIPVisionCfg, _build_vision_tower, resize_pos_embed

import clipdense as cd
from clipdense.models import NACLIP, SCLIP, DenseMode, register_mode, tower_facts
from clipdense.models import dense_modes
from clipdense.models.blocks import LastBlock, OpenClipParts
from clipdense.models.dense import interpolate_pos_embed, neighbourhood_bias


def _open_clip_tokens(model, images):
    visual = model.visual
    visual.output_tokens = True
    try:
        pooled, tokens = visual(images)
    finally:
        visual.output_tokens = False
    return pooled, tokens @ visual.proj


def _last(block, x, grid) -> LastBlock:
    return LastBlock(block, x, grid, 1, block)


@torch.no_grad()
def test_vanilla_equals_open_clip_at_native_size(tiny_bundle):
    images = torch.randn(2, 3, 64, 64)
    out = cd.dense_forward(tiny_bundle.model, images, "vanilla")
    pooled, tokens = _open_clip_tokens(tiny_bundle.model, images)
    torch.testing.assert_close(out.image_embed, tiny_bundle.model.encode_image(images), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.dense.flatten(2).transpose(1, 2), tokens, atol=1e-5, rtol=1e-5)
    assert out.layers == ()


@torch.no_grad()
def test_vanilla_equals_open_clip_at_other_size():
    """At 96x96, open_clip with its position table resized (bicubic, no antialias) gives the same tokens."""
    torch.manual_seed(1)
    small = cd.load_model("tiny-vit-t8", device="cpu").model
    big = open_clip.create_model("tiny-vit-t8", force_image_size=96)
    state = small.state_dict()
    resize_pos_embed(state, big, interpolation="bicubic", antialias=False)
    big.load_state_dict(state)
    images = torch.randn(2, 3, 96, 96)
    out = cd.dense_forward(small, images, "vanilla")
    pooled, tokens = _open_clip_tokens(big, images)
    torch.testing.assert_close(out.image_embed, pooled, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out.dense.flatten(2).transpose(1, 2), tokens, atol=1e-5, rtol=1e-4)


@torch.no_grad()
def test_layers_equal_open_clip_forward_intermediates(tiny_bundle):
    images = torch.randn(2, 3, 64, 64)
    out = cd.dense_forward(tiny_bundle.model, images, "maskclip", layers=(2, 0, -2, -1))
    ref = tiny_bundle.model.visual.forward_intermediates(images, indices=[0, 1, 2], intermediates_only=True)
    expected = ref["image_intermediates"]
    assert len(out.layers) == 4 and out.layers[0].shape == (2, 64, 8, 8)
    for ours, theirs in zip(out.layers, [expected[2], expected[0], expected[1], expected[2]]):
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    vanilla = cd.dense_forward(tiny_bundle.model, images, "vanilla", layers=(-1,))
    torch.testing.assert_close(vanilla.layers[0], expected[2], atol=1e-5, rtol=1e-5)


def test_gradient_checkpointing_runs_through_open_clip_and_keeps_gradients():
    bundle = cd.load_model("tiny-vit-t8", device="cpu")
    visual, images = bundle.model.visual, torch.randn(2, 3, 48, 64)

    def grads() -> list[torch.Tensor]:
        bundle.model.zero_grad()
        out = cd.dense_forward(bundle.model, images, "maskclip", layers=(0,))
        (out.dense.square().mean() + out.layers[0].mean() + out.image_embed.sum()).backward()
        return [p.grad.clone() for p in visual.parameters() if p.grad is not None]

    plain = grads()
    visual.set_grad_checkpointing(True)
    real = open_clip.transformer.checkpoint
    with mock.patch.object(open_clip.transformer, "checkpoint", side_effect=real) as spy:
        checkpointed = grads()
    assert spy.call_count == 2  # blocks 0 and 1 through open_clip's forward_intermediates
    assert len(plain) == len(checkpointed) > 0
    for a, b in zip(plain, checkpointed):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("mode", sorted(cd.DENSE_MODES))
@torch.no_grad()
def test_every_mode_shape_norm_and_global_path(tiny_bundle, mode):
    images = torch.randn(2, 3, 48, 80)
    dense = cd.encode_dense(tiny_bundle.model, images, mode)
    assert dense.shape == (2, 64, 6, 10)
    torch.testing.assert_close(dense.norm(dim=1), torch.ones(2, 6, 10))
    out = cd.dense_forward(tiny_bundle.model, images[:, :, :48, :48], mode)
    vanilla = cd.dense_forward(tiny_bundle.model, images[:, :, :48, :48], "vanilla")
    torch.testing.assert_close(out.image_embed, vanilla.image_embed, atol=1e-6, rtol=1e-5)


@torch.no_grad()
def test_modes_differ_from_vanilla(tiny_bundle):
    images = torch.randn(1, 3, 64, 64)
    vanilla = cd.encode_dense(tiny_bundle.model, images, "vanilla")
    for mode in set(cd.DENSE_MODES) - {"vanilla"}:
        assert (cd.encode_dense(tiny_bundle.model, images, mode) - vanilla).abs().max() > 1e-3, mode


@torch.no_grad()
def test_maskclip_is_local(tiny_bundle):
    """maskclip has no token mixing in the last block: changing a far patch's *last-block input* cannot
    move a patch's feature."""
    block = tiny_bundle.model.visual.transformer.resblocks[-1]
    x = torch.randn(1, 1 + 64, 64)
    y = x.clone()
    y[0, 64] += 5.0 * torch.randn(64)  # last patch (random: a constant shift is removed by LayerNorm)
    maskclip, vanilla = cd.DENSE_MODES["maskclip"], cd.DENSE_MODES["vanilla"]
    out_x, out_y = (maskclip.patch_tokens(_last(block, t, (8, 8))) for t in (x, y))
    torch.testing.assert_close(out_x[0, :63], out_y[0, :63])
    out_v, out_w = (vanilla.patch_tokens(_last(block, t, (8, 8))) for t in (x, y))
    assert (out_v[0, :63] - out_w[0, :63]).abs().max() > 1e-4


@torch.no_grad()
def test_clearclip_has_no_residual(tiny_bundle):
    """Without residual/FFN, the patch outputs equal the q-q attention output alone."""
    block = tiny_bundle.model.visual.transformer.resblocks[-1]
    x = torch.randn(2, 1 + 16, 64)
    parts = OpenClipParts(block, 1)
    q, _, v = parts.qkv(x)
    expected = parts.project(F.scaled_dot_product_attention(q[:, :, 1:], q, v))
    torch.testing.assert_close(cd.DENSE_MODES["clearclip"].patch_tokens(_last(block, x, (4, 4))), expected)


def _hand_attention(block, x):
    """q, k, v per head from the packed in-projection, written out by hand."""
    y = block.ln_1(x)
    q, k, v = (y @ block.attn.in_proj_weight.T + block.attn.in_proj_bias).chunk(3, dim=-1)
    heads = block.attn.num_heads
    return [t.reshape(1, t.shape[1], heads, -1).transpose(1, 2) for t in (q, k, v)]


def _merge(block, out):
    return block.attn.out_proj(out.transpose(1, 2).reshape(1, out.shape[2], -1))


@torch.no_grad()
def test_naclip_matches_hand_written_attention_for_any_std(tiny_bundle):
    block = tiny_bundle.model.visual.transformer.resblocks[-1]
    x = torch.randn(1, 1 + 9, 64)
    q, k, v = _hand_attention(block, x)
    scale = q.shape[-1] ** -0.5
    bias = neighbourhood_bias((3, 3), 5.0, x.device, x.dtype)
    assert bias[0, 0] == 0 and bias[0, 1] == 1 and bias[0, 9] < 1
    outs = {}
    for std in (5.0, 1.5):
        bias = neighbourhood_bias((3, 3), std, x.device, x.dtype)
        nk = (k[:, :, 1:] @ k.transpose(-1, -2) * scale + bias).softmax(-1)
        outs[std] = NACLIP(std=std).patch_tokens(_last(block, x, (3, 3)))
        torch.testing.assert_close(outs[std], _merge(block, nk @ v), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(outs[5.0], cd.DENSE_MODES["naclip"].patch_tokens(_last(block, x, (3, 3))))
    assert (outs[5.0] - outs[1.5]).abs().max() > 1e-4


def _official_sclip_last_block(block, x):
    """wangf3014/SCLIP clip/model.py: ``x = x + custom_attn(ln_1(x), csa=True); x = x + mlp(ln_2(x))``,
    with custom_attn as published (sequence-first, bmm, softmax(qq^T) + softmax(kk^T))."""
    x = x.permute(1, 0, 2)  # NLD -> LND
    y = block.ln_1(x)
    attn = block.attn
    num_heads = attn.num_heads
    _, bsz, embed_dim = y.size()
    head_dim = embed_dim // num_heads
    scale = head_dim ** -0.5
    q, k, v = F.linear(y, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    q = q.contiguous().view(-1, bsz * num_heads, head_dim).transpose(0, 1)
    k = k.contiguous().view(-1, bsz * num_heads, head_dim).transpose(0, 1)
    v = v.contiguous().view(-1, bsz * num_heads, head_dim).transpose(0, 1)
    q_attn = torch.bmm(q, q.transpose(1, 2)) * scale
    k_attn = torch.bmm(k, k.transpose(1, 2)) * scale
    attn_weights = F.softmax(q_attn, dim=-1) + F.softmax(k_attn, dim=-1)
    attn_output = torch.bmm(attn_weights, v)
    attn_output = attn_output.transpose(0, 1).contiguous().view(-1, bsz, embed_dim)
    x = x + attn.out_proj(attn_output)
    x = x + block.mlp(block.ln_2(x))
    return x.permute(1, 0, 2)


@pytest.fixture(scope="module")
def vit_b16_tower() -> torch.nn.Module:
    """open_clip's ViT-B-16 image tower with random weights."""
    config = open_clip.get_model_config("ViT-B-16")
    torch.manual_seed(0)
    return _build_vision_tower(config["embed_dim"], CLIPVisionCfg(**config["vision_cfg"])).eval()


@pytest.mark.parametrize("size", [(224, 224), (320, 256)])
@torch.no_grad()
def test_sclip_equals_the_official_formulation_on_vit_b16(vit_b16_tower, size):
    visual = vit_b16_tower
    images = torch.randn(1, 3, *size)
    grid = (size[0] // 16, size[1] // 16)
    x = visual.conv1(images).flatten(2).transpose(1, 2)
    x = torch.cat([visual.class_embedding.view(1, 1, -1), x], dim=1)
    patch_pos = visual.positional_embedding[1:].reshape(1, 14, 14, -1).permute(0, 3, 1, 2)
    patch_pos = F.interpolate(patch_pos, size=grid, mode="bicubic", align_corners=False).flatten(2).transpose(1, 2)
    x = visual.ln_pre(x + torch.cat([visual.positional_embedding[:1][None], patch_pos], dim=1))
    for block in visual.transformer.resblocks[:-1]:
        x = block(x)
    x = _official_sclip_last_block(visual.transformer.resblocks[-1], x)
    expected = visual.ln_post(x[:, 1:]) @ visual.proj
    out = cd.dense_forward(visual, images, "sclip")
    assert out.dense.shape == (1, 512, *grid)
    torch.testing.assert_close(out.dense.flatten(2).transpose(1, 2), expected, atol=1e-5, rtol=1e-5)
    halved = cd.dense_forward(visual, images, SCLIP(reduction="mean")).dense
    assert (halved - out.dense).abs().max() > 1e-3


@dataclass(frozen=True)
class KeysOnly(DenseMode):
    """A mode written for this test: k-k attention, residual kept, no FFN."""

    name: ClassVar[str] = "test-keys-only"
    description: ClassVar[str] = "k-k attention, residual, no FFN (test)"

    def patch_tokens(self, last: LastBlock) -> torch.Tensor:
        parts = last.parts(self.name)
        _, k, v = last.qkv(self.name)
        heads = F.scaled_dot_product_attention(k[:, :, 1:], k, v)
        return parts.attn_residual(last.x[:, 1:], parts.project(heads))


@torch.no_grad()
def test_a_new_mode_is_one_class(tiny_bundle):
    images = torch.randn(1, 3, 64, 64)
    out = cd.dense_forward(tiny_bundle.model, images, KeysOnly())
    vanilla = cd.dense_forward(tiny_bundle.model, images, "vanilla")
    assert out.dense.shape == (1, 64, 8, 8) and (out.dense - vanilla.dense).abs().max() > 1e-3
    torch.testing.assert_close(out.image_embed, vanilla.image_embed, atol=1e-6, rtol=1e-5)
    assert "test-keys-only" not in cd.DENSE_MODES
    register_mode(KeysOnly)
    try:
        assert isinstance(cd.DENSE_MODES["test-keys-only"], KeysOnly)
        torch.testing.assert_close(cd.dense_forward(tiny_bundle.model, images, "test-keys-only").dense, out.dense)
        with pytest.raises(ValueError, match="already registered"):
            register_mode(KeysOnly)
    finally:
        dense_modes._REGISTRY.pop("test-keys-only")


def test_mode_registry_and_parameters():
    assert list(cd.DENSE_MODES) == ["vanilla", "maskclip", "sclip", "clearclip", "naclip"]
    assert all(mode.description and "\n" not in mode.description for mode in cd.DENSE_MODES.values())
    assert cd.DENSE_MODES["naclip"] == NACLIP(std=5.0) and cd.DENSE_MODES["sclip"] == SCLIP(reduction="sum")
    with pytest.raises(TypeError):
        cd.DENSE_MODES["x"] = NACLIP()  # read-only mapping
    with pytest.raises(cd.ConfigError, match="std"):
        NACLIP(std=0.0)
    with pytest.raises(cd.ConfigError, match="reduction"):
        SCLIP(reduction="max")


def test_tower_facts(tiny_bundle):
    facts = tower_facts(tiny_bundle.model)
    assert (facts.width, facts.output_dim, facts.patch_size, facts.image_size, facts.num_blocks,
            facts.num_prefix_tokens) == (64, 64, (8, 8), (64, 64), 3, 1)
    assert cd.models.patch_grid(tiny_bundle.model, (48, 80)) == (6, 10)


def test_interpolation_keeps_class_position_and_is_identity_at_same_grid():
    pos = torch.randn(1 + 16, 8)
    assert interpolate_pos_embed(pos, (4, 4), (4, 4)) is pos
    out = interpolate_pos_embed(pos, (4, 4), (6, 3))
    assert out.shape == (1 + 18, 8)
    torch.testing.assert_close(out[0], pos[0])
    no_prefix = interpolate_pos_embed(pos[1:], (4, 4), (6, 3), prefix=0)
    torch.testing.assert_close(no_prefix, out[1:])


def test_bad_inputs(tiny_bundle):
    with pytest.raises(cd.ConfigError, match="unknown dense mode"):
        cd.encode_dense(tiny_bundle.model, torch.randn(1, 3, 64, 64), "nope")
    with pytest.raises(cd.ConfigError, match="smaller than"):
        cd.encode_dense(tiny_bundle.model, torch.randn(1, 3, 4, 64))
    for bad in (3, -4):
        with pytest.raises(cd.ConfigError, match="layers"):
            cd.dense_forward(tiny_bundle.model, torch.randn(1, 3, 64, 64), layers=(0, bad))
    resnet = open_clip.modified_resnet.ModifiedResNet(layers=(1, 1, 1, 1), output_dim=32, heads=2,
                                                       image_size=64, width=8)
    with pytest.raises(cd.ModelLoadError, match="ModifiedResNet"):
        cd.dense_forward(resnet, torch.randn(1, 3, 64, 64))
