"""The trained few-shot methods as objectives: ``coop``, ``cocoop``, ``maple``, ``clip-adapter``, ``tip-adapter-f``.

Each trains its adapter head (``clipdense.heads.adapters``) by cross-entropy of the adapter's class logits on
``image_label`` Samples (an ImageFolder, a world's classify split, or the k-shot subset ``clipdense adapt`` draws),
on the one engine, so checkpoints, resume, the run lock and progress are the engine's. Options are the method's
architecture ``Config`` (inherited) plus ``FewShotOptions``. The export is the adapter, saved as a head
(``adapter/<method>``) tied to the frozen model's weights.

Pixels, not precomputed features: each step encodes its batch with the frozen image tower (under no_grad unless
the method prompts that tower, as MaPLe does). A feature cache would make a step's numbers depend on which batch
first saw an image (CPU matmuls differ by batch size), breaking bit-exact resume; the frozen forward is cheap next
to the text tower's forward and backward that the prompt methods pay every step.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..data.readers import DataInfo
from ..data.sample import Sample
from ..errors import ConfigError, DataError
from ..heads.adapters import (Adapter, ClipAdapter, ClipAdapterConfig, CoCoOp, CoOp, CoOpConfig, MaPLe,
                              MaPLeConfig, PromptConfig, TipAdapter, TipAdapterConfig, TipAdapterF, load_adapter)
from .base import HeadExport, Objective

IGNORE = -1   # label of an image whose class is not in the training vocabulary


@dataclass
class FewShotOptions:
    """What every few-shot objective adds to its method's ``Config``.

    Args:
        classes: the training vocabulary (default: every class of ``--data``, minus a world's novel ones); images
            of other classes are ignored (e.g. the novel half of a base-to-novel protocol).
    """

    classes: list[str] = field(default_factory=list)


def training_vocabulary(data_classes: Sequence[str] | None, named: Sequence[str],
                        held_out: Sequence[str] = ()) -> tuple[list[str], list[int]]:
    """(vocabulary, lookup): ``lookup[label]`` is a data label's index in the vocabulary or ``IGNORE``."""
    if data_classes is None:
        raise DataError("few-shot training needs data that names its classes (an ImageFolder, a world's classify "
                        "split)")
    unknown = [c for c in named if c not in data_classes]
    if unknown:
        raise ConfigError(f"classes {unknown[:3]} are not among the data's classes ({list(data_classes)[:5]}...)")
    vocabulary = list(named) or [c for c in data_classes if c not in set(held_out)]
    if not vocabulary:
        raise ConfigError("classes: no class left to train on")
    return vocabulary, [vocabulary.index(c) if c in vocabulary else IGNORE for c in data_classes]


@dataclass
class FewShotTransform:
    """(sample, generator) -> the model's preprocessed pixels and the label's vocabulary index (deterministic:
    the few-shot protocols train on the shots as they are)."""

    preprocess: Callable[[Any], torch.Tensor]
    lookup: Sequence[int]

    def __call__(self, sample: Sample, generator: torch.Generator) -> dict[str, torch.Tensor]:
        if sample.image_label is None or not 0 <= sample.image_label < len(self.lookup):
            raise DataError(f"{sample.key}: image_label {sample.image_label!r} is not a class of the data "
                            f"(0..{len(self.lookup) - 1})")
        return {"pixels": self.preprocess(sample.image),
                "label": torch.tensor(self.lookup[sample.image_label], dtype=torch.long)}


class FewShotObjective(Objective):
    """Cross-entropy of ``adapter_class``'s logits over the training vocabulary (frozen CLIP, trained adapter)."""

    needs: ClassVar[frozenset[str]] = frozenset({"image_label"})
    adapter_class: ClassVar[type[Adapter]] = Adapter

    def __init__(self, bundle: Any, options: Any = None, info: DataInfo | None = None, total_steps: int = 1) -> None:
        super().__init__()
        self.options = options if options is not None else self.Options()
        info = info or DataInfo()
        self.bundle = bundle
        self.backbone = bundle.model    # registered, so it moves with the objective; frozen, so never saved
        self.adapter = self.build_adapter(bundle, info)
        self.vocabulary, self.lookup = training_vocabulary(info.classes, self.adapter.classes, info.novel)

    def build_adapter(self, bundle: Any, info: DataInfo) -> Adapter:
        """The untrained head on the training vocabulary (options are-a ``adapter_class.Config``)."""
        vocabulary, _ = training_vocabulary(info.classes, self.options.classes, info.novel)
        return self.adapter_class(bundle, vocabulary, self.options)

    def frozen_modules(self) -> list[nn.Module]:
        return [self.backbone]

    def sample_transform(self) -> FewShotTransform:
        return FewShotTransform(self.bundle.preprocess, self.lookup)

    def exported_model(self) -> nn.Module:
        return self.adapter

    def exported_head(self) -> HeadExport:
        return HeadExport(self.adapter, self.bundle)

    def train(self, mode: bool = True) -> "FewShotObjective":
        super().train(mode)
        self.backbone.eval()
        return self

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.adapter.needs_pixels):
            features = self.adapter.encode_images(batch["pixels"])
        logits = self.adapter.logits(features, self.adapter.classes)
        labels = batch["label"].to(logits.device)
        loss = F.cross_entropy(logits.float(), labels, ignore_index=IGNORE)
        valid = labels != IGNORE
        accuracy = ((logits.argmax(-1) == labels) & valid).sum() / valid.sum().clamp_min(1)
        return {"loss": loss, "accuracy": accuracy.detach()}


class CoOpObjective(FewShotObjective):
    """CoOp: learned prompt context (``--objective-arg n_ctx=16 class_position=middle ...``)."""

    name = "coop"
    adapter_class = CoOp

    @dataclass
    class Options(FewShotOptions, CoOpConfig):
        """CoOp's ``CoOpConfig`` fields and ``FewShotOptions``."""


class CoCoOpObjective(FewShotObjective):
    """CoCoOp: CoOp's context shifted per image by a Meta-Net."""

    name = "cocoop"
    adapter_class = CoCoOp

    @dataclass
    class Options(FewShotOptions, PromptConfig):
        """CoCoOp's ``PromptConfig`` fields and ``FewShotOptions``."""


class MaPLeObjective(FewShotObjective):
    """MaPLe: coupled prompts in both towers (the image tower's output depends on them: trained on pixels)."""

    name = "maple"
    adapter_class = MaPLe

    @dataclass
    class Options(FewShotOptions, MaPLeConfig):
        """MaPLe's ``MaPLeConfig`` fields and ``FewShotOptions``."""


class ClipAdapterObjective(FewShotObjective):
    """CLIP-Adapter: residual bottleneck MLPs on the frozen features."""

    name = "clip-adapter"
    adapter_class = ClipAdapter

    @dataclass
    class Options(FewShotOptions, ClipAdapterConfig):
        """CLIP-Adapter's ``ClipAdapterConfig`` fields and ``FewShotOptions``."""


class TipAdapterFObjective(FewShotObjective):
    """Tip-Adapter-F: fine-tunes the cache keys of a fitted Tip-Adapter (``cache=HEAD``, from
    ``clipdense adapt --method tip-adapter``); its classes are the vocabulary, its cache the starting keys."""

    name = "tip-adapter-f"
    adapter_class = TipAdapterF

    @dataclass
    class Options:
        """cache: the tip-adapter head file whose classes, templates, keys, labels, alpha and beta the run starts
        from (so its ``TipAdapterConfig`` and vocabulary are that file's, not options)."""

        cache: str = ""

    def build_adapter(self, bundle: Any, info: DataInfo) -> Adapter:
        if not self.options.cache:
            raise ConfigError("tip-adapter-f needs --objective-arg cache=HEAD: a tip-adapter head "
                              "(`clipdense adapt --method tip-adapter`) whose cache it fine-tunes")
        cache = load_adapter(self.options.cache, bundle)
        if type(cache) is not TipAdapter:
            raise ConfigError(f"cache={self.options.cache}: a {cache.method} head, expected a tip-adapter head")
        training_vocabulary(info.classes, cache.classes)     # the data must name every cached class
        config = TipAdapterConfig(templates=cache.templates, cache_size=int(cache.keys.shape[0]),
                                  alpha=float(cache.alpha), beta=float(cache.beta))
        adapter = TipAdapterF(bundle, cache.classes, config)
        adapter.fill_cache(cache.keys, cache.cache_labels)
        return adapter
