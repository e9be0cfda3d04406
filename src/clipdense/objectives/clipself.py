"""CLIPSelf: region features of the student's dense map learn the frozen teacher's crop embeddings.

Wu et al., "CLIPSelf: Vision Transformer Distills Itself for Open-Vocabulary Dense Prediction",
ICLR 2024. The student's dense map (``dense_mode``, maskclip as published) is RoIAligned over
regions of the image; the teacher (a frozen copy of the starting model) embeds the same regions
cropped and resized to its input size; loss = 1 - cosine. Beyond the recipe: a global guard
keeping the student's image (and crop) embeddings near the teacher's, a teacher cache, multi-scale
students, and a student/teacher weight ensemble at export (see ``ensemble_weights``).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..models.dense import DENSE_MODES, dense_forward, tower_facts
from ..models.towers import tower_of
from ..models.pooling import pool_boxes
from ..models.loading import latest_run_weights, load_model, model_config
from ..models.weights import META_DENSE_SIZE, save_weights
from .base import ClipTraining, DataInfo, SampleTransform
from .clipself_regions import REGION_MODES, ClipSelfTransform
from .teacher_cache import TeacherCache, teacher_fingerprint
from .views import model_image_stats

TRAINABLE = ("blocks", "tower")


def _option(default: Any, help: str, **kwargs: Any) -> Any:
    """A dataclass field whose ``help`` is the flag's help in `clipdense distill` (one declaration)."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help, **kwargs})
    return field(default=default, metadata={"help": help, **kwargs})


@dataclass
class ClipSelfOptions:
    """Options of CLIPSelf: ``--objective-arg KEY=VALUE`` of `clipdense train --objective clipself`, and
    flags of `clipdense distill` (generated from these fields; ``help`` below is their text)."""

    regions: str = _option("grid", "grid cells (the paper's image patches) or the data's boxes/proposals",
                           choices=REGION_MODES)
    max_split: int = _option(6, "the grid rule's M: at most M cells per side (paper: 6)")
    max_regions: int = _option(20, "regions per image, K (paper: 20)")
    dense_mode: str = _option("maskclip", "the student's dense mode (paper: maskclip-style value path)")
    student_size: int = _option(0, "student input side (paper: 1024 for a 224 teacher); 0 = 2x the teacher's")
    student_sizes: list[int] = _option([], "several student sides cycled step by step (multi-scale); "
                                           "overrides student_size")
    teacher_size: int = _option(0, "side of the teacher's crops; 0 = the model's input size")
    box_expand: float = _option(1.5, "teacher crops of boxes are this much larger (paper: 1.5); grid cells are not")
    global_guard: float = _option(0.0, "weight of 1 - cos(student image embedding, teacher's) (0 = off)")
    crop_guard: float = _option(0.0, "weight of 1 - cos(student crop embedding, teacher's) (0 = off)")
    teacher_cache: str = _option("", "folder caching the teacher's embeddings (\"\" = no cache)")
    fixed_regions: bool = _option(False, "grid cells drawn from the image's hash, the same every epoch "
                                         "(the cache needs it; on with --teacher-cache)")
    cache_flush_every: int = _option(200, "write the teacher cache after this many steps (and at the end)")
    train: str = _option("blocks", "what trains: the tower's transformer blocks only, the stem, class/position "
                                   "embeddings and output layers frozen (published: 'fix output layers'), or the "
                                   "whole image 'tower'", choices=TRAINABLE)
    keep_aspect: bool = _option(True, "student image and teacher crops keep their aspect: longest side resized, "
                                      "padded bottom-right (published); false squashes them to squares")
    min_box_size: float = _option(8.0, "boxes under this side^2 in pixels are dropped (published: 8)")
    max_box_size: float = _option(1024.0, "boxes over this side^2 in pixels are dropped (published: 1024)")
    normalize_patches: bool = _option(True, "unit-norm each patch feature before RoIAlign (published); false "
                                            "pools the raw map and normalises the pooled feature only")


def cache_view(teacher_size: int, keep_aspect: bool) -> str:
    """What besides the teacher's weights decides its crop embeddings: the crop side and whether crops are
    letterboxed or squashed (the keys already name the crop box), so a cache never serves the other view."""
    return f"size={teacher_size}" + ("" if keep_aspect else " squashed")


def freeze_all_but(model: nn.Module, train: str) -> None:
    """Only the image tower trains ("tower"), or only its transformer blocks ("blocks")."""
    model.requires_grad_(False)
    trainable = tower_of(model).blocks if train == "blocks" else model.visual
    trainable.requires_grad_(True)


def _validate(options: ClipSelfOptions) -> None:
    if options.regions not in REGION_MODES:
        raise ConfigError(f"regions must be one of {REGION_MODES}, got {options.regions!r}")
    if options.train not in TRAINABLE:
        raise ConfigError(f"train must be one of {TRAINABLE}, got {options.train!r}")
    if not 0 <= options.min_box_size <= options.max_box_size:
        raise ConfigError(f"expected 0 <= min_box_size <= max_box_size, got {options.min_box_size}, "
                          f"{options.max_box_size}")
    if options.dense_mode not in DENSE_MODES:
        raise ConfigError(f"dense_mode must be one of {sorted(DENSE_MODES)}, got {options.dense_mode!r}")
    if options.max_split < 1 or options.max_regions < 1:
        raise ConfigError("max_split and max_regions must be >= 1")
    if options.global_guard < 0 or options.crop_guard < 0:
        raise ConfigError("global_guard and crop_guard must be >= 0")
    if options.student_size < 0 or options.teacher_size < 0 or any(s < 1 for s in options.student_sizes):
        raise ConfigError(f"student_size {options.student_size} / teacher_size {options.teacher_size} / student_sizes "
                          f"{options.student_sizes}: expected sizes in pixels (0 = the default size)")


class ClipSelfObjective(ClipTraining):
    """Dense self-distillation of an open_clip ViT; only the image tower trains.

    Batch (from ``sample_transform``): image (B,3,S,S), crops (B,K,3,T,T), boxes (B,K,4) normalised,
    valid (B,K), keys (B,K+1) cache keys (last: the whole image), and global (B,3,T,T) with the guard.
    The teacher is a frozen copy of the image tower only.
    """

    name: ClassVar[str] = "clipself"
    Options: ClassVar[type] = ClipSelfOptions

    def __init__(self, bundle: Any, options: ClipSelfOptions | None = None, info: DataInfo | None = None,
                 total_steps: int = 1, teacher: nn.Module | None = None) -> None:
        super().__init__()
        model = bundle.model
        self.options = options or ClipSelfOptions()
        _validate(self.options)
        self.model, self.total_steps = model, total_steps
        # the teacher only ever embeds images: keep its image tower alone (frozen)
        source = teacher if teacher is not None else model
        self.teacher = copy.deepcopy(getattr(source, "visual", source))
        teacher_dim, self.output_dim = tower_facts(self.teacher).output_dim, tower_facts(model).output_dim
        if type(self.teacher) is not type(model.visual) or teacher_dim != self.output_dim or \
                self.teacher.state_dict().keys() != model.visual.state_dict().keys() or any(
                    a.shape != b.shape for a, b in zip(self.teacher.state_dict().values(),
                                                       model.visual.state_dict().values())):
            raise ConfigError("teacher and student must have the same image-tower architecture "
                              f"({type(self.teacher).__name__}, output {teacher_dim} vs "
                              f"{type(model.visual).__name__}, output {self.output_dim})")
        self.teacher.requires_grad_(False).eval()
        freeze_all_but(model, self.options.train)
        size, self.mean, self.std = model_image_stats(model)
        self.teacher_size = self.options.teacher_size or size
        sizes = list(self.options.student_sizes) or [self.options.student_size or 2 * self.teacher_size]
        self.student_sizes = [int(s) for s in sizes]
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.int64))
        self.cache = self._open_cache()

    def _open_cache(self) -> TeacherCache | None:
        if not self.options.teacher_cache:
            return None
        fingerprint = teacher_fingerprint(self.teacher, cache_view(self.teacher_size, self.options.keep_aspect))
        return TeacherCache(self.options.teacher_cache, fingerprint)

    def train(self, mode: bool = True) -> "ClipSelfObjective":
        super().train(mode)
        self.teacher.eval()  # the teacher is frozen: no dropout, ever
        return self

    def exported_model(self) -> nn.Module:
        return self.model

    def export_metadata(self) -> dict[str, str]:
        """The student's input side: the size its dense map is trained to be read at (evaluation uses it)."""
        return {META_DENSE_SIZE: str(max(self.student_sizes))}

    @classmethod
    def required_fields(cls, options: ClipSelfOptions) -> frozenset[str]:
        return frozenset({"boxes"}) if options.regions == "boxes" else frozenset()

    @classmethod
    def describe_requirement(cls, options: ClipSelfOptions) -> str:
        return f"clipself with regions={options.regions}"

    def frozen_modules(self) -> list[nn.Module]:
        """The teacher is the starting weights' image tower, rebuilt from the model spec on resume."""
        return [self.teacher]

    def sample_transform(self) -> SampleTransform:
        o = self.options
        return ClipSelfTransform(o, max(self.student_sizes), self.teacher_size, self.mean, self.std,
                                 o.fixed_regions or bool(o.teacher_cache), with_global=o.global_guard > 0,
                                 cached=self.cache.__contains__ if self.cache is not None else None)

    @torch.no_grad()
    def teacher_targets(self, images: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """Unit-norm teacher embeddings of ``images`` (N,3,T,T), served from the cache when possible."""
        if self.cache is None:
            return F.normalize(self.teacher(images).float(), dim=-1)
        found, values = self.cache.lookup(keys.cpu())
        out = torch.empty(len(keys), self.output_dim, device=images.device)
        if found.any():
            out[found.to(images.device)] = torch.stack([v for v in values if v is not None]).to(images.device)
        missing = (~found).to(images.device)
        if missing.any():
            fresh = F.normalize(self.teacher(images[missing]).float(), dim=-1)
            out[missing] = fresh
            self.cache.store(keys[~found.to(keys.device)], fresh)
        return out

    def _student_images(self, images: torch.Tensor) -> torch.Tensor:
        sizes = self.student_sizes  # reading the step buffer syncs with the GPU: only when there is a choice
        size = sizes[0] if len(sizes) == 1 else sizes[int(self.steps_done) % len(sizes)]
        if images.shape[-1] == size:
            return images
        return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        valid, keys = batch["valid"], batch["keys"]
        images = self._student_images(batch["image"])
        out = dense_forward(self.model, images, self.options.dense_mode)
        size = images.shape[-1]
        boxes = [b[v] * size for b, v in zip(batch["boxes"], valid)]
        # normalise each patch feature before RoIAlign and the pooled one after, as the official code does
        # (and as the evaluation's rois pool the unit-norm map)
        dense = F.normalize(out.dense.float(), dim=1) if self.options.normalize_patches else out.dense.float()
        student = F.normalize(pool_boxes(dense, boxes, (size, size), validate=False), dim=-1)
        crops = batch["crops"][valid]
        target = self.teacher_targets(crops, keys[:, :-1][valid])
        cosine = (student * target).sum(-1)
        region_loss = (1 - cosine).mean()
        losses = {"region_loss": region_loss.detach(), "region_cos": cosine.mean().detach()}
        loss = region_loss
        if self.options.global_guard > 0:
            own = F.normalize(self.model.encode_image(batch["global"]).float(), dim=-1)
            guard = (1 - (own * self.teacher_targets(batch["global"], keys[:, -1])).sum(-1)).mean()
            loss = loss + self.options.global_guard * guard
            losses["global_guard"] = guard.detach()
        if self.options.crop_guard > 0:
            own = F.normalize(self.model.encode_image(crops).float(), dim=-1)
            guard = (1 - (own * target).sum(-1)).mean()
            loss = loss + self.options.crop_guard * guard
            losses["crop_guard"] = guard.detach()
        if self.cache is not None:
            seen = max(self.cache.hits + self.cache.misses, 1)
            losses["cache_hit_rate"] = torch.tensor(self.cache.hits / seen)
        return {"loss": loss, **losses}

    @torch.no_grad()
    def after_step(self, step: int) -> None:
        self.steps_done += 1
        if self.cache is not None and (step % self.options.cache_flush_every == 0 or step >= self.total_steps):
            self.cache.flush()

    def describe(self) -> dict[str, Any]:
        return {**vars(self.options), "student_sizes": self.student_sizes, "teacher_size": self.teacher_size}


@torch.no_grad()
def ensemble_weights(student: nn.Module, teacher: nn.Module, student_ratio: float = 0.7) -> nn.Module:
    """A copy of ``student`` with weights ``ratio * student + (1 - ratio) * teacher`` (the recipe's 0.7).

    Both are full CLIP models of one architecture (the text tower is unchanged by distillation).
    """
    if not 0.0 <= student_ratio <= 1.0:
        raise ConfigError(f"ensemble ratio must be in [0, 1], got {student_ratio}")
    mixed = copy.deepcopy(student)
    teacher_state = teacher.state_dict()
    for name, tensor in mixed.state_dict().items():
        if tensor.is_floating_point():
            tensor.mul_(student_ratio).add_(teacher_state[name].to(tensor.dtype), alpha=1 - student_ratio)
    return mixed


def write_ensemble(run_dir: str | Path, model: str, pretrained: str | None, ratio: float) -> Path:
    """RUN/ensemble.safetensors: ``ratio`` x the run's student + (1 - ratio) x its starting weights (``model`` +
    ``pretrained``, the teacher); the CLIPSelf recipe saves 0.7."""
    run_dir = Path(run_dir)
    student = load_model(latest_run_weights(run_dir), device="cpu")
    teacher = load_model(model, pretrained, device="cpu")
    mixed = ensemble_weights(student.model, teacher.model, ratio)
    path = run_dir / "ensemble.safetensors"
    metadata = {"clipdense.ensemble_ratio": str(ratio)}
    if student.dense_size:
        metadata[META_DENSE_SIZE] = str(student.dense_size)
    save_weights(mixed, path, student.name, model_config(student.name), metadata)
    return path
