"""What a task is handed: the model as encode functions (big_vision's habit), the settings and the data.

This is the only evaluation module that knows about models: it turns a ``Bundle`` into the functions on
tensors and strings the evaluators take, so a task never calls the model itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torch import Tensor

from ..errors import ConfigError
from ..models import Bundle, encode_dense, pool_boxes, pool_masks, text_classifier
from ..models.pooling import teacher_crops
from ..models.segmenters import ModelSegmenter, segmenter_of
from ..models.towers import tower_facts
from ..tasks.images import normalisation
from ..tasks.segment import segment_logits, sliding_window
from .common import DenseEncoder, LogitsFn
from .inputs import EvalData
from .regions import METHODS

Preprocess = Callable[[Image.Image], Tensor]


@dataclass(frozen=True)
class EvalSettings:
    """The knobs of one evaluation run (``clipdense eval``'s flags).

    Args:
        modes: dense modes; dense tasks run once per mode.
        short_side: short side (px) of the images dense tasks see.
        batch_size: images per forward pass.
        templates: prompt templates of the text classifiers.
        window / stride: sliding-window segmentation (px, after resizing); None: whole image.
        background_threshold: probability under which a pixel is background in the things-only setting.
        region_methods: which of rois / crops / maskpool the regions task runs.
        show_progress: progress bars on stderr.
        head: a trained head (file or run dir) for the tasks that evaluate one (``--head``).
        crop_keep_aspect: the ``crops`` baseline letterboxes each crop (CLIPSelf's published teacher view) or
            stretches it (``keep_aspect=False``): set it as the CLIPSelf run being compared was trained.
    """

    modes: tuple[str, ...]
    short_side: int
    batch_size: int = 32
    templates: str = "imagenet"
    window: int | None = None
    stride: int | None = None
    background_threshold: float = 0.1
    region_methods: tuple[str, ...] = METHODS
    show_progress: bool = False
    head: str | None = None
    crop_keep_aspect: bool = True

    def __post_init__(self) -> None:
        unknown = [m for m in self.region_methods if m not in METHODS]
        if unknown or not self.region_methods:
            raise ConfigError(f"--region-methods: unknown {unknown or list(self.region_methods)}, expected some of "
                              f"{list(METHODS)}")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size: expected a positive integer, got {self.batch_size}")


class EvalContext:
    """The model as encode functions on ``device``, the run's settings and its data.

    Text classifiers are cached per class name: tasks naming the same classes (zero-shot on a world's
    things, then its segmentation over things and stuff) encode each prompt set once.
    """

    #: the model's own segmenter when it segments by itself (GroupViT); None: it is read by dense modes
    segmenter: ModelSegmenter | None = None

    def __init__(self, bundle: Bundle, device: torch.device, settings: EvalSettings, data: EvalData) -> None:
        self.bundle, self.device, self.settings, self.data = bundle, device, settings, data
        self.input_size: tuple[int, int] = tuple(bundle.image_size)
        self.preprocess: Preprocess = bundle.preprocess   # the model's own (resize + crop + normalise)
        self.pool_boxes, self.pool_masks = pool_boxes, pool_masks
        self._mean, self._std = normalisation(bundle.model)
        self.segmenter = segmenter_of(bundle.model)
        self._rows: dict[str, Tensor] = {}

    @property
    def patch_size(self) -> int | None:
        """Pixels per patch of the dense map read by dense modes (None for a model segmenting by itself)."""
        return None if self.segmenter is not None else tower_facts(self.bundle.model).patch_size[0]

    def encode_image(self, images: Tensor) -> Tensor:
        """(B, 3, S, S) normalised pixels -> (B, D) image embeddings."""
        return self.bundle.model.encode_image(images.to(self.device))

    def encode_text(self, texts: Sequence[str]) -> Tensor:
        """N strings -> (N, D) text embeddings."""
        return self.bundle.model.encode_text(self.bundle.tokenizer(list(texts)).to(self.device))

    def to_tensor(self, image: Image.Image) -> Tensor:
        """A PIL image as a normalised (3, H, W) tensor at its own size (dense tasks resize first)."""
        return TF.normalize(TF.to_tensor(image), self._mean, self._std)

    def crop(self, images: Tensor, boxes: list[Tensor]) -> Tensor:
        """Crops of normalised ``images`` at pixel ``boxes`` for the image tower: CLIPSelf's teacher crop path
        (letterboxed to the input size), so the ``crops`` baseline is what CLIPSelf distils."""
        return teacher_crops(images, boxes, self.input_size[0], self._mean, self._std,
                             keep_aspect=self.settings.crop_keep_aspect)

    def dense(self, mode: str) -> DenseEncoder:
        """images -> (B, D, h, w) unit-norm dense map in dense mode ``mode`` (a model with its own segmenter: each
        location takes its segment's embedding, whatever ``mode``)."""
        def run(images: Tensor) -> Tensor:
            if self.segmenter is not None:
                return self.segmenter.dense(images.to(self.device))
            return encode_dense(self.bundle.model, images.to(self.device), mode)
        return run

    def segment_logits(self, mode: str, classifier: Tensor) -> LogitsFn:
        """images -> (B, C, H, W) cosine scores against ``classifier`` (whole image or sliding window)."""
        window, stride = self.settings.window, self.settings.stride

        def run(images: Tensor) -> Tensor:
            return segment_logits(self.bundle.model, images.to(self.device), classifier, mode, window, stride)
        return run

    def head_segment_logits(self, head: torch.nn.Module, classes: Sequence[str]) -> LogitsFn:
        """images -> (B, C, H, W) log-probabilities of a trained segmentation head (``tasks.segment``'s
        whole image or sliding window), so a softmax of them is the head's own class probabilities."""
        window, stride, names = self.settings.window, self.settings.stride, list(classes)

        def run(images: Tensor) -> Tensor:
            scores = sliding_window(lambda crop: head.segment_logits(crop, names), images.to(self.device),
                                    len(names), window, stride)
            return head.probabilities(scores).clamp_min(1e-12).log()
        return run

    def classifier(self, names: Sequence[str]) -> Tensor:
        """(C, D) prompt-ensemble classifier of ``names`` with the run's templates."""
        missing = [n for n in dict.fromkeys(names) if n not in self._rows]
        if missing:
            rows = text_classifier(self.bundle, missing, self.settings.templates)
            self._rows.update(zip(missing, rows))
        return torch.stack([self._rows[n] for n in names])
