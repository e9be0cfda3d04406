"""GroupViT (Xu et al. 2022, "GroupViT: Semantic Segmentation Emerges from Text Supervision").

A ViT whose tokens are grouped stage by stage: stage 1 runs patch tokens together with learnable group tokens
(64 in the paper), then a grouping block assigns every patch to one group; stage 2 runs those segments with new
group tokens (8) and groups again; a last stage of plain blocks runs over the final segments, which are averaged
and projected into the joint image-text space. The grouping block is cross-attention from the group tokens to
the segment tokens, then an assignment of each segment to one group by Gumbel-softmax over the groups - hard
(one-hot) in the forward pass with the straight-through gradient of the soft assignment in training, plain argmax
without noise at test time - and the new segment features are the assignment-weighted means plus an MLP. The text
tower is open_clip's text transformer; the tokenizer is the CLIP BPE every tiny clipdense model uses.

Segmentation is the grouping itself (``GroupViTSegmenter``, registered for ``GroupViT``): each pixel takes its
final group through both stages' hard assignments, and a group's class is its most similar prompt among the
image's top-k classes. The blocks are timm's ``Block`` and ``Mlp``; the cross-attention is torch's
``MultiheadAttention``; the Gumbel-softmax is torch's ``F.gumbel_softmax``.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from open_clip.model import _build_text_tower
from open_clip.tokenizer import SimpleTokenizer
from open_clip.transform import PreprocessCfg, image_transform_v2
from timm.layers import Mlp, PatchEmbed, trunc_normal_
from timm.models.vision_transformer import Block
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..errors import ModelLoadError
from .families import FAMILY_KEY, ModelFamily, register_family
from .positions import interpolate_pos_embed
from .segmenters import ModelSegmenter, register_segmenter
from .text_tokenizer import TOKENIZER_KINDS

CONFIG_DIR = Path(__file__).parent / "configs" / "groupvit"
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class GroupViTVisionCfg:
    """The image tower.

    Args:
        image_size: native input side (the position table's grid; other sizes interpolate it).
        patch_size: pixels per patch side.
        width / heads / mlp_ratio: token width, attention heads, MLP expansion of every block.
        depths: blocks per stage; one more stage than ``groups`` (the last stage does not group).
        groups: group tokens of each grouping stage (the paper: 64, 8), i.e. segments after it.
        gumbel_tau: temperature of the Gumbel-softmax assignment in training. The hard (forward) assignment is
            argmax(logits + noise) whatever the temperature; it sets only the soft gradient's sharpness.
        gumbel: add Gumbel noise to the assignment logits in training (the paper); off, training assigns by the
            same noise-free argmax as test time (straight-through gradient either way).
    """

    image_size: int = 224
    patch_size: int = 16
    width: int = 384
    heads: int = 6
    depths: tuple[int, ...] = (6, 3, 3)
    groups: tuple[int, ...] = (64, 8)
    mlp_ratio: float = 4.0
    gumbel_tau: float = 1.0
    gumbel: bool = True

    def __post_init__(self) -> None:
        self.depths, self.groups = tuple(int(d) for d in self.depths), tuple(int(g) for g in self.groups)
        if not self.groups or len(self.depths) != len(self.groups) + 1:
            raise ModelLoadError(f"groupvit vision_cfg: depths {list(self.depths)} must have one entry more than "
                                 f"groups {list(self.groups)} (at least one grouping stage)")
        if min(self.groups) < 1 or min(self.depths) < 0 or self.width % self.heads:
            raise ModelLoadError(f"groupvit vision_cfg: expected groups >= 1, depths >= 0 and width divisible by "
                                 f"heads, got groups {list(self.groups)}, depths {list(self.depths)}, "
                                 f"width {self.width}, heads {self.heads}")


@dataclass
class GroupViTConfig:
    """A whole GroupViT: joint-space width, image tower, open_clip text tower config (``CLIPTextCfg`` keys)."""

    embed_dim: int = 256
    vision_cfg: GroupViTVisionCfg = field(default_factory=GroupViTVisionCfg)
    text_cfg: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, config: dict[str, Any], source: str) -> "GroupViTConfig":
        """Validate a JSON config; an unknown key is one line naming it."""
        vision = dict(config.get("vision_cfg", {}))
        unknown = sorted(set(config) - {FAMILY_KEY, "embed_dim", "vision_cfg", "text_cfg"})
        unknown += [f"vision_cfg.{k}" for k in sorted(set(vision) - {f.name for f in fields(GroupViTVisionCfg)})]
        if unknown:
            raise ModelLoadError(f"{source}: unknown GroupViT config keys {unknown}")
        return cls(int(config.get("embed_dim", 256)), GroupViTVisionCfg(**vision), dict(config.get("text_cfg", {})))


def hard_assignment(logits: torch.Tensor, dim: int) -> torch.Tensor:
    """One-hot argmax along ``dim`` in the forward pass, the softmax's gradient in the backward pass."""
    soft = logits.softmax(dim)
    hard = torch.zeros_like(soft).scatter_(dim, soft.argmax(dim, keepdim=True), 1.0)
    return hard - soft.detach() + soft


class AssignAttention(nn.Module):
    """Single-head attention whose weights assign each segment (key) to one group (query).

    The softmax runs over the groups (each segment distributes over them), is made one-hot, and each group's
    output is the mean of the values assigned to it (GroupViT's ``AssignAttention``, ``assign_eps=1``).
    """

    def __init__(self, width: int, gumbel_tau: float = 1.0, gumbel: bool = True) -> None:
        super().__init__()
        self.q_proj, self.k_proj, self.v_proj = (nn.Linear(width, width) for _ in range(3))
        self.proj = nn.Linear(width, width)
        self.scale, self.gumbel_tau, self.gumbel = width ** -0.5, gumbel_tau, gumbel

    def logits(self, groups: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
        """(B, G, N) scaled dot products of group queries and segment keys."""
        return self.q_proj(groups) @ self.k_proj(segments).transpose(1, 2) * self.scale

    def assign(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, G, N) one-hot over G per segment: Gumbel-softmax with straight-through in training, argmax at test."""
        if self.training and self.gumbel:
            return F.gumbel_softmax(logits, tau=self.gumbel_tau, hard=True, dim=1)
        return hard_assignment(logits / self.gumbel_tau if self.training else logits, dim=1)

    def forward(self, groups: torch.Tensor, segments: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(group outputs, (B, G, N) assignment, (B, G, N) noise-free logits it was drawn from)."""
        logits = self.logits(groups, segments)
        assignment = self.assign(logits)
        weights = assignment / (assignment.sum(dim=-1, keepdim=True) + 1.0)
        return self.proj(weights @ self.v_proj(segments)), assignment, logits


class CrossAttnBlock(nn.Module):
    """Group tokens attend to segment tokens (pre-norm on the keys, MLP, norm after: GroupViT's post_norm)."""

    def __init__(self, width: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm_k = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.norm_mlp = nn.LayerNorm(width)
        self.mlp = Mlp(width, int(width * mlp_ratio))
        self.norm_post = nn.LayerNorm(width)

    def forward(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        key = self.norm_k(key)
        x = query + self.attn(query, key, key, need_weights=False)[0]
        return self.norm_post(x + self.mlp(self.norm_mlp(x)))


class TokenMlp(nn.Module):
    """An MLP across tokens (n_in tokens -> n_out tokens), GroupViT's ``MixerMlp``."""

    def __init__(self, n_in: int, hidden: int, n_out: int) -> None:
        super().__init__()
        self.mlp = Mlp(n_in, hidden, n_out)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.mlp(tokens.transpose(1, 2)).transpose(1, 2)


class GroupingBlock(nn.Module):
    """Segments + group tokens -> one new segment per group, and the (B, G, N) hard assignment."""

    def __init__(self, width: int, heads: int, num_groups: int, mlp_ratio: float, gumbel_tau: float,
                 gumbel: bool = True) -> None:
        super().__init__()
        self.norm_tokens, self.norm_x = nn.LayerNorm(width), nn.LayerNorm(width)
        self.mlp_inter = TokenMlp(num_groups, width // 2, num_groups)
        self.norm_post_tokens = nn.LayerNorm(width)
        self.pre_assign_attn = CrossAttnBlock(width, heads, mlp_ratio)
        self.assign = AssignAttention(width, gumbel_tau, gumbel)
        self.norm_new_x = nn.LayerNorm(width)
        self.mlp_channels = Mlp(width, int(width * mlp_ratio), width)

    def forward(self, x: torch.Tensor, group_tokens: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(new segments, (B, G, N) assignment, its noise-free logits)."""
        x = self.norm_x(x)
        groups = self.norm_post_tokens(self.mlp_inter(self.norm_tokens(group_tokens)))
        groups = self.pre_assign_attn(groups, x)
        new_x, assignment, logits = self.assign(groups, x)
        new_x = new_x + groups
        return new_x + self.mlp_channels(self.norm_new_x(new_x)), assignment, logits


class GroupingStage(nn.Module):
    """Blocks over segments (+ this stage's group tokens), then grouping when the stage has group tokens."""

    def __init__(self, cfg: GroupViTVisionCfg, depth: int, num_groups: int, prev_groups: int) -> None:
        super().__init__()
        width = cfg.width
        self.num_groups = num_groups
        self.blocks = nn.ModuleList(Block(width, cfg.heads, cfg.mlp_ratio, qkv_bias=True, norm_layer=nn.LayerNorm)
                                    for _ in range(depth))
        self.group_embedding = nn.Parameter(torch.zeros(1, num_groups, width)) if num_groups else None
        self.group_projector = nn.Sequential(nn.LayerNorm(width), TokenMlp(prev_groups, width // 2, num_groups)) \
            if num_groups and prev_groups else None
        if self.group_embedding is not None and self.group_projector is None:
            trunc_normal_(self.group_embedding, std=0.02)   # later stages start from the projected previous ones
        self.grouping = GroupingBlock(width, cfg.heads, num_groups, cfg.mlp_ratio, cfg.gumbel_tau, cfg.gumbel) \
            if num_groups else None
        self.grad_checkpointing = False

    def forward(self, x: torch.Tensor, prev_groups: torch.Tensor | None
                ) -> tuple[torch.Tensor, torch.Tensor | None, tuple[torch.Tensor, torch.Tensor] | None]:
        """(segments out, this stage's group tokens, ((B, G, N) assignment, its logits)); the last two None without
        grouping."""
        groups = None
        if self.group_embedding is not None:
            groups = self.group_embedding.expand(x.shape[0], -1, -1)
            if self.group_projector is not None and prev_groups is not None:
                groups = groups + self.group_projector(prev_groups)
            x = torch.cat([x, groups], dim=1)
        for block in self.blocks:
            x = checkpoint(block, x, use_reentrant=False) if self.grad_checkpointing and torch.is_grad_enabled() \
                else block(x)
        if self.grouping is None:
            return x, None, None
        x, groups = x[:, :-self.num_groups], x[:, -self.num_groups:]
        x, assignment, logits = self.grouping(x, groups)
        return x, groups, (assignment, logits)


@dataclass
class GroupingOutput:
    """One pass of the image tower: the final segment tokens (normed, (B, G, width)), the hard assignment of
    every grouping stage ((B, G_s, N_s), N_1 = patches), the patch grid, and each stage's noise-free assignment
    logits (what the Gumbel noise is added to in training; their argmax is the test-time assignment)."""

    tokens: torch.Tensor
    assignments: list[torch.Tensor]
    grid: tuple[int, int]
    logits: list[torch.Tensor] = field(default_factory=list)


class GroupViTVision(nn.Module):
    """The grouping image tower: patches -> stages -> average of the final segments -> joint space."""

    def __init__(self, cfg: GroupViTVisionCfg, output_dim: int) -> None:
        super().__init__()
        self.cfg, self.output_dim = cfg, output_dim
        self.image_size, self.patch_size = (cfg.image_size, cfg.image_size), (cfg.patch_size, cfg.patch_size)
        self.grid_size = (cfg.image_size // cfg.patch_size, cfg.image_size // cfg.patch_size)
        self.patch_embed = PatchEmbed(cfg.image_size, cfg.patch_size, 3, cfg.width, strict_img_size=False,
                                      output_fmt="NHWC")
        self.positional_embedding = nn.Parameter(torch.zeros(self.grid_size[0] * self.grid_size[1], cfg.width))
        trunc_normal_(self.positional_embedding, std=0.02)
        counts = (*cfg.groups, 0)
        self.stages = nn.ModuleList(GroupingStage(cfg, depth, counts[i], counts[i - 1] if i else 0)
                                    for i, depth in enumerate(cfg.depths))
        self.norm = nn.LayerNorm(cfg.width)
        self.proj = nn.Linear(cfg.width, output_dim, bias=False)
        self.preprocess_cfg = {"size": cfg.image_size, "mode": "RGB", "mean": OPENAI_MEAN, "std": OPENAI_STD,
                               "interpolation": "bicubic", "resize_mode": "shortest", "fill_color": 0}

    def forward_groups(self, images: torch.Tensor) -> GroupingOutput:
        x = self.patch_embed(images.to(self.patch_embed.proj.weight.dtype))
        grid = (x.shape[1], x.shape[2])
        x = x.flatten(1, 2)
        x = x + interpolate_pos_embed(self.positional_embedding, self.grid_size, grid, prefix=0).to(x.dtype)
        groups, assignments, logits = None, [], []
        for stage in self.stages:
            x, groups, grouped = stage(x, groups)
            if grouped is not None:
                assignments.append(grouped[0])
                logits.append(grouped[1])
        return GroupingOutput(self.norm(x), assignments, grid, logits)

    def embed(self, out: GroupingOutput) -> torch.Tensor:
        """(B, output_dim) image embedding of a pass: the mean of the final segments, projected."""
        return self.proj(out.tokens.mean(dim=1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, output_dim) image embedding: the mean of the final segments, projected."""
        return self.embed(self.forward_groups(images))

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for stage in self.stages:
            stage.grad_checkpointing = enable


class GroupViT(nn.Module):
    """GroupViT with open_clip's interface: ``encode_image``, ``encode_text``, ``logit_scale``, ``visual``."""

    def __init__(self, config: GroupViTConfig) -> None:
        super().__init__()
        self.config = config
        self.visual = GroupViTVision(config.vision_cfg, config.embed_dim)
        self.text = _build_text_tower(config.embed_dim, config.text_cfg)
        self.context_length = self.text.context_length
        self.logit_scale = nn.Parameter(torch.ones([]) * math.log(1 / 0.07))

    def encode_image(self, images: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        features = self.visual(images)
        return F.normalize(features, dim=-1) if normalize else features

    def encode_text(self, text: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        features = self.text(text)
        return F.normalize(features, dim=-1) if normalize else features

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Unit-norm image and text embeddings and exp(logit_scale), as open_clip's CLIP."""
        return self.encode_image(image, normalize=True), self.encode_text(text, normalize=True), \
            self.logit_scale.exp()

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.visual.set_grad_checkpointing(enable)
        self.text.set_grad_checkpointing(enable)


def chained_assignments(assignments: list[torch.Tensor]) -> list[torch.Tensor]:
    """Patch -> group of every stage: (B, G_s, N_patches), the product of the stages' assignments so far."""
    chained, current = [], None
    for assignment in assignments:
        current = assignment if current is None else assignment @ current
        chained.append(current)
    return chained


@torch.no_grad()
def groups_per_image(out: GroupingOutput) -> list[torch.Tensor]:
    """(B,) count per stage of the groups holding at least one patch under the noise-free (test-time) assignment."""
    hard = [hard_assignment(logits.float(), dim=1) for logits in out.logits]
    return [(chain.sum(dim=-1) > 0).sum(dim=1) for chain in chained_assignments(hard)]


@torch.no_grad()
def grouping_stats(out: GroupingOutput) -> dict[str, torch.Tensor]:
    """How much of its grouping a pass uses - the collapse signal, logged while training.

    ``groups_s{i}``: patch groups per image at stage i under the test-time (noise-free argmax) assignment, i.e.
    stage-i groups that hold at least one patch through the chained assignments, averaged over the batch (1 =
    collapsed: the whole image is one segment). ``entropy_s{i}``: the mean entropy of each segment's softmax over
    the stage's groups, divided by log(G) (0 = every segment certain of its group, 1 = uniform over groups).
    In training the logits of stage 2 are those of the segments stage 1's Gumbel draw made.
    """
    stats: dict[str, torch.Tensor] = {}
    for index, (used, logits) in enumerate(zip(groups_per_image(out), out.logits), start=1):
        stats[f"groups_s{index}"] = used.float().mean()
        probs = logits.float().softmax(dim=1)
        entropy = -(probs * probs.clamp_min(1e-12).log()).sum(dim=1).mean()
        stats[f"entropy_s{index}"] = entropy / math.log(logits.shape[1]) if logits.shape[1] > 1 else entropy * 0
    return stats


def pixel_groups(chain: torch.Tensor, grid: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """(B, H, W) group index of every pixel: the (B, G, N) patch assignment upsampled bilinearly, then argmax."""
    maps = chain.reshape(chain.shape[0], chain.shape[1], *grid).float()
    maps = F.interpolate(maps, size=size, mode="bilinear", align_corners=False)
    return maps.argmax(dim=1)


@register_segmenter(GroupViT)
class GroupViTSegmenter(ModelSegmenter):
    """GroupViT's zero-shot segmentation (its ``GroupViTSegInference``): every pixel takes its final group through
    both stages' hard assignments, and a group's scores are the softmax of its similarities restricted to the
    image's ``top_k`` classes times the softmax over all classes.

    Args:
        model: a GroupViT.
        top_k: classes the whole image predicts, among which each group picks (5 as the paper's code).
    """

    name = "grouping"

    def __init__(self, model: GroupViT, top_k: int = 5) -> None:
        super().__init__(model)
        self.top_k = top_k

    def _groups(self, images: torch.Tensor) -> tuple[GroupingOutput, torch.Tensor, torch.Tensor]:
        """The tower's pass, (B, G, D) unit-norm group embeddings and the (B, D) unit-norm image embedding."""
        out = self.model.visual.forward_groups(images)
        proj = self.model.visual.proj
        return out, F.normalize(proj(out.tokens).float(), dim=-1), F.normalize(proj(out.tokens.mean(1)).float(), dim=-1)

    def class_scores(self, images: torch.Tensor, classifier: torch.Tensor) -> torch.Tensor:
        out, groups, image = self._groups(images)
        classifier = classifier.to(groups.device, groups.dtype)
        scale = self.model.logit_scale.exp().clamp(max=100).float()
        group_logits = scale * groups @ classifier.T                     # (B, G, C)
        top = (scale * image @ classifier.T).topk(min(self.top_k, classifier.shape[0]), dim=-1).indices
        allowed = torch.zeros_like(group_logits[:, 0]).scatter_(1, top, 1.0).bool()[:, None]
        scores = group_logits.masked_fill(~allowed, float("-inf")).softmax(-1) * group_logits.softmax(-1)
        index = pixel_groups(chained_assignments(out.assignments)[-1], out.grid, tuple(images.shape[-2:]))
        gathered = scores.gather(1, index.flatten(1)[..., None].expand(-1, -1, scores.shape[-1]))
        return gathered.transpose(1, 2).reshape(scores.shape[0], -1, *images.shape[-2:])

    def dense(self, images: torch.Tensor) -> torch.Tensor:
        out, groups, _ = self._groups(images)
        chain = chained_assignments(out.assignments)[-1]                  # (B, G, N) one-hot over G
        dense = torch.einsum("bgn,bgd->bdn", chain.to(groups.dtype), groups)
        return F.normalize(dense, dim=1).reshape(dense.shape[0], dense.shape[1], *out.grid)

    def segments(self, images: torch.Tensor) -> list[torch.Tensor]:
        out = self.model.visual.forward_groups(images)
        return [pixel_groups(chain, out.grid, tuple(images.shape[-2:]))
                for chain in chained_assignments(out.assignments)]


class GroupViTFamily(ModelFamily):
    """The GroupViT architectures (``models/configs/groupvit/*.json``) and how to build them."""

    name = "groupvit"

    def builtin(self) -> dict[str, dict[str, Any]]:
        return {path.stem: json.loads(path.read_text()) for path in sorted(CONFIG_DIR.glob("*.json"))}

    def create(self, name: str, config: dict[str, Any], tokenizer: str | None
               ) -> tuple[nn.Module, Callable[[Any], torch.Tensor], Callable[..., torch.Tensor]]:
        model = GroupViT(GroupViTConfig.from_dict(config, name))
        preprocess = image_transform_v2(PreprocessCfg(**model.visual.preprocess_cfg), is_train=False)
        text_cfg = model.config.text_cfg
        if tokenizer is not None or text_cfg.get("hf_tokenizer_name"):
            text = TOKENIZER_KINDS["hugging-face"](name, text_cfg, tokenizer)
        else:
            text = SimpleTokenizer(context_length=model.context_length)
        return model, preprocess, text


register_family(GroupViTFamily())
