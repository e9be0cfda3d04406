"""SILC: CLIP on global views + local-to-global self-distillation from an EMA teacher.

Naeem et al. 2023, "SILC: Improving Vision Language Pretraining with Self-Distillation" (§3),
built on DINO (Caron et al. 2021). Also the SigLIP 2 recipe (Tschannen et al. 2025, §2.2): the
term switched on for the last fraction of training, teacher initialised from the student then.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ..data.sample import Sample
from ..errors import ConfigError
from ..models.dense import interpolate_pos_embed
from .base import ClipTraining, DataInfo, SampleTransform, rank_and_world
from .clip import contrastive_loss
from .siglip import attach_logit_bias, sigmoid_loss
from .views import ImageView, Tokenize, model_image_stats


@dataclass
class SilcOptions:
    """Options of the silc objective, with the source of each default.

    Args:
        distill_weight: weight of the self-distillation term; 1.0 (SILC adds the two losses).
        momentum: fixed EMA momentum of the teacher. SILC §3 keeps it fixed (a schedule to 1 stops
            the teacher learning from the image-text loss); 0.996 is DINO's base value (§3.1, App.).
        global_crops, global_scale: 2 crops over (0.4, 1.0) of the area (SILC §4 / DINO).
        local_crops, local_scale: 8 crops over (0.05, 0.4) (SILC §4 / DINO).
        local_size: local crop side in pixels; 0 = round(image size * 96/224) to a patch multiple
            (DINO's 96 px at 224 px). Position embeddings are interpolated for them.
        out_dim: prototypes K = 65536; hidden_dim 2048, bottleneck_dim 256 (DINO head, §3 / App.).
        teacher_temp: 0.04 and student_temp 0.1 (DINO §3.1 sharpening).
        center_momentum: 0.9 (DINO teacher centring).
        start_fraction: turn the term on after this fraction of the steps, re-initialising the
            teacher from the student (SigLIP 2 uses 0.8); 0 = from the start (SILC).
        contrastive: the image-text term: "softmax" (InfoNCE, SILC-C) or "sigmoid" (SigLIP's pairwise loss
            with a learnable bias, SILC-S; SILC §4 trains both).
        init_temperature, init_bias: SILC-S's starting t' = log 10 and b = -10 (SigLIP §3.3; kept when the
            model already has a bias).
        local_loss, gather_with_grad, max_logit_scale: as the clip objective.

    The SILC paper names its DINO-style head and EMA teacher but not every value: momentum, temperatures,
    centring, head sizes and crop counts above are our choices, each DINO's published value (Caron et al.
    2021, §3.1 and App.), noted per field.
    """

    distill_weight: float = 1.0
    momentum: float = 0.996
    global_crops: int = 2
    global_scale: tuple[float, float] = (0.4, 1.0)
    local_crops: int = 8
    local_scale: tuple[float, float] = (0.05, 0.4)
    local_size: int = 0
    out_dim: int = 65536
    hidden_dim: int = 2048
    bottleneck_dim: int = 256
    teacher_temp: float = 0.04
    student_temp: float = 0.1
    center_momentum: float = 0.9
    start_fraction: float = 0.0
    local_loss: bool = True
    gather_with_grad: bool = True
    max_logit_scale: float = 100.0
    contrastive: str = "softmax"
    init_temperature: float = math.log(10.0)
    init_bias: float = -10.0


CONTRASTIVE = ("softmax", "sigmoid")


class DinoHead(nn.Module):
    """MLP -> l2-normalised bottleneck -> cosine scores against K unit-norm prototypes (DINO)."""

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int, bottleneck_dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, hidden_dim),
                                 nn.GELU(), nn.Linear(hidden_dim, bottleneck_dim))
        self.prototypes = nn.Parameter(torch.randn(out_dim, bottleneck_dim) * 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = F.normalize(self.mlp(x.float()), dim=-1)
        return z @ F.normalize(self.prototypes, dim=-1).T


@dataclass
class MultiCrop:
    """Global crops (model size) and local crops (small) of one image, plus its caption."""

    global_view: ImageView
    local_view: ImageView
    global_crops: int
    local_crops: int
    tokenize: Tokenize

    def __call__(self, sample: Sample, generator: torch.Generator) -> dict[str, torch.Tensor]:
        image, text = sample.image, sample.caption
        return {"globals": torch.stack([self.global_view(image, generator) for _ in range(self.global_crops)]),
                "locals": torch.stack([self.local_view(image, generator) for _ in range(self.local_crops)]),
                "text": self.tokenize(text)}


def encode_any_size(visual: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The vision tower on images of another size: same weights, interpolated position table."""
    grid = (images.shape[-2] // visual.patch_size[0], images.shape[-1] // visual.patch_size[1])
    if tuple(grid) == tuple(visual.grid_size):
        return visual(images)
    pos = interpolate_pos_embed(visual.positional_embedding, visual.grid_size, grid)
    return functional_call(visual, {"positional_embedding": pos}, (images,))


class SilcObjective(ClipTraining):
    """CLIP on every global view + DINO loss of student(local crops) against teacher(global crops).

    Batch: ``{"globals": (B,G,3,H,W), "locals": (B,L,3,h,w), "text": (B,T)}``.
    """

    name: ClassVar[str] = "silc"
    needs: ClassVar[frozenset[str]] = frozenset({"caption"})
    Options: ClassVar[type] = SilcOptions

    def __init__(self, bundle: Any, options: SilcOptions | None = None, info: DataInfo | None = None,
                 total_steps: int = 1) -> None:
        super().__init__()
        model = bundle.model
        self.model, self.tokenizer = model, bundle.tokenizer
        self.options = o = options or SilcOptions()
        if o.contrastive not in CONTRASTIVE:
            raise ConfigError(f"contrastive must be one of {CONTRASTIVE}, got {o.contrastive!r}")
        if o.contrastive == "sigmoid":
            attach_logit_bias(model, o.init_temperature, o.init_bias)
        self.start_step = int(round(o.start_fraction * total_steps))
        self.ddp_find_unused_parameters = self.start_step > 0
        self.head = DinoHead(int(model.visual.output_dim), o.out_dim, o.hidden_dim, o.bottleneck_dim)
        self.teacher = copy.deepcopy(model.visual).requires_grad_(False)
        self.teacher_head = copy.deepcopy(self.head).requires_grad_(False)
        self.register_buffer("center", torch.zeros(1, o.out_dim))
        self.register_buffer("distill_on", torch.tensor(self.start_step == 0))
        # a host copy of distill_on, so a CUDA step never syncs to read it; refreshed after a state load
        self._distilling: bool | None = self.start_step == 0
        self.register_load_state_dict_post_hook(lambda module, keys: setattr(module, "_distilling", None))

    def exported_model(self) -> nn.Module:
        return self.model

    @property
    def distilling(self) -> bool:
        """Whether the self-distillation term is on (read from the buffer once after each state load)."""
        if self._distilling is None:
            self._distilling = bool(self.distill_on)
        return self._distilling

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        o, globals_ = self.options, batch["globals"]
        b, g = globals_.shape[:2]
        text = self.model.encode_text(batch["text"], normalize=True)
        image = F.normalize(self.model.encode_image(globals_.flatten(0, 1)).float(), dim=-1).view(b, g, -1)
        scale = self.model.logit_scale.exp()
        clip = sum(self._contrastive(image[:, i], text, scale) for i in range(g)) / g
        out = {"clip_loss": clip.detach(), "logit_scale": scale.detach()}
        if not self.distilling:
            return {"loss": clip, **out}
        distill = self._distillation(globals_.flatten(0, 1), batch["locals"], b)
        return {"loss": clip + o.distill_weight * distill, "distill_loss": distill.detach(), **out}

    def _contrastive(self, image: torch.Tensor, text: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """SILC-C (InfoNCE) or SILC-S (sigmoid) image-text loss of one global view."""
        o = self.options
        if o.contrastive == "sigmoid":
            return sigmoid_loss(image, text, scale, self.model.logit_bias)
        return contrastive_loss(image, text, scale, o.local_loss, o.gather_with_grad)

    def _distillation(self, globals_: torch.Tensor, locals_: torch.Tensor, b: int) -> torch.Tensor:
        """Cross-entropy of each local student view against each centred, sharpened teacher global view."""
        o = self.options
        with torch.no_grad():
            t_logits = self.teacher_head(self.teacher(globals_)).float()
            teacher = F.softmax((t_logits - self.center) / o.teacher_temp, dim=-1).view(b, -1, o.out_dim)
            self._update_center(t_logits)
        student = self.head(encode_any_size(self.model.visual, locals_.flatten(0, 1))).float()
        log_p = F.log_softmax(student / o.student_temp, dim=-1).view(b, -1, o.out_dim)
        # (B, G, K) x (B, L, K) -> mean over samples and all G x L pairs
        return -torch.einsum("bgk,blk->bgl", teacher, log_p).mean()

    @torch.no_grad()
    def _update_center(self, t_logits: torch.Tensor) -> None:
        """EMA of the batch-mean teacher output over all ranks (DINO's centring)."""
        mean = t_logits.sum(dim=0, keepdim=True)
        count = torch.tensor([float(t_logits.shape[0])], device=mean.device)
        _, world = rank_and_world()
        if world > 1:
            dist.all_reduce(mean)
            dist.all_reduce(count)
        m = self.options.center_momentum
        self.center.mul_(m).add_(mean / count, alpha=1 - m)

    @torch.no_grad()
    def after_step(self, step: int) -> None:
        """Clamp the temperature; start the term (teacher := student) or move the teacher by EMA."""
        self.model.logit_scale.clamp_(0, math.log(self.options.max_logit_scale))
        if not self.distilling:
            if step >= self.start_step:
                self.teacher.load_state_dict(self.model.visual.state_dict())
                self.teacher_head.load_state_dict(self.head.state_dict())
                self.distill_on.fill_(True)
                self._distilling = True
            return
        m = self.options.momentum
        for source, target in ((self.model.visual, self.teacher), (self.head, self.teacher_head)):
            params = list(zip(source.parameters(), target.parameters()))
            torch._foreach_lerp_([t for _, t in params], [s.detach() for s, _ in params], 1 - m)

    def sample_transform(self) -> SampleTransform:
        size, mean, std = model_image_stats(self.model)
        o = self.options
        patch = self.model.visual.patch_size[0]
        local = o.local_size or max(patch, int(round(size * 96 / 224 / patch)) * patch)
        return MultiCrop(ImageView(size, tuple(float(x) for x in o.global_scale), flip=True, mean=mean, std=std),
                         ImageView(local, tuple(float(x) for x in o.local_scale), flip=True, mean=mean, std=std),
                         o.global_crops, o.local_crops, Tokenize(self.tokenizer))
