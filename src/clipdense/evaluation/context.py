"""What a task is handed: the model as encode functions (big_vision's habit), the common settings and the data.

This is the only evaluation module that knows about models: it turns a ``Bundle`` into the functions on
tensors and strings the evaluators take, so a task never calls the model itself. Settings every task shares
live in ``EvalSettings``; a task's own options are its registered dataclass (``registry``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torch import Tensor

from ..errors import ConfigError
from ..models import DENSE_MODES, Bundle, encode_dense, pool_boxes, pool_masks, text_classifier
from ..models.pooling import teacher_crops
from ..models.segmenters import ModelSegmenter, segmenter_of
from ..models.towers import tower_facts
from ..tasks.images import normalisation
from ..tasks.segment import segment_logits, sliding_window
from .common import DenseEncoder, LogitsFn
from .inputs import EvalData
from .options import option

Preprocess = Callable[[Image.Image], Tensor]


def dense_mode_choices() -> tuple[str, ...]:
    """'all' and every registered dense mode (read when checked, so a mode registered later counts)."""
    return ("all", *DENSE_MODES)


@dataclass(frozen=True)
class EvalSettings:
    """Settings every task shares (``clipdense eval``'s flags are generated from these fields).

    A task's own knobs (sliding window, background threshold, region methods ...) are its options
    (``--task-arg TASK.KEY=VALUE``), declared with the task at registration.
    """

    split: str = option("val", "split of a world to evaluate; other data is evaluated as given", flag="--split")
    batch_size: int = option(32, "images per forward pass", flag="--batch-size", low=1, what="a count")
    device: str | None = option(None, "cpu, cuda, cuda:1 ... (default: cuda if available)")
    show_progress: bool = option(False, "progress bars on stderr", flag="--progress")
    templates: str = option("imagenet", "prompt templates of the text classifiers: imagenet, simple, plain, "
                            "photo, or one template with {}", flag="--templates")
    dense_mode: tuple[str, ...] = option(("maskclip",), "dense mode(s) of the dense tasks (segmentation, "
                                         "regions): one, a comma list, or 'all'", flag="--dense-mode",
                                         choices=dense_mode_choices)
    image_size: int | None = option(None, "short side (px) of the images dense tasks see (default: the size the "
                                    "model's dense map is meant for, else its input size)", flag="--image-size",
                                    low=1, what="a size in pixels")


def resolve_modes(modes: str | Sequence[str]) -> tuple[str, ...]:
    """'all', 'a,b' or a list -> validated dense modes."""
    names = [m.strip() for m in (modes.split(",") if isinstance(modes, str) else modes) if m.strip()]
    if names == ["all"]:
        return tuple(DENSE_MODES)
    unknown = [m for m in names if m not in DENSE_MODES]
    if unknown or not names:
        raise ConfigError(f"--dense-mode: unknown {unknown or names}, expected 'all' or some of {list(DENSE_MODES)}")
    return tuple(dict.fromkeys(names))


class EvalContext:
    """The model as encode functions on ``device``, the run's settings, its data and the ``--head`` if any.

    Text classifiers are cached per class name: tasks naming the same classes (zero-shot on a world's
    things, then its segmentation over things and stuff) encode each prompt set once.
    """

    #: the model's own segmenter when it segments by itself (GroupViT); None: it is read by dense modes
    segmenter: ModelSegmenter | None = None

    def __init__(self, bundle: Bundle, device: torch.device, settings: EvalSettings, data: EvalData | None,
                 head: str | None = None) -> None:
        self.bundle, self.device, self.settings, self.data, self.head = bundle, device, settings, data, head
        self.input_size: tuple[int, int] = tuple(bundle.image_size)
        self.preprocess: Preprocess = bundle.preprocess   # the model's own (resize + crop + normalise)
        self.pool_boxes, self.pool_masks = pool_boxes, pool_masks
        self._mean, self._std = normalisation(bundle.model)
        self.segmenter = segmenter_of(bundle.model)
        #: short side (px) of the images dense tasks see
        self.short_side: int = settings.image_size or getattr(bundle, "dense_size", None) or min(bundle.image_size)
        #: dense modes the dense tasks run in (a model segmenting by itself: its segmenter's one way)
        self.modes: tuple[str, ...] = (self.segmenter.name,) if self.segmenter is not None else \
            resolve_modes(settings.dense_mode)
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

    def crop(self, images: Tensor, boxes: list[Tensor], keep_aspect: bool = True) -> Tensor:
        """Crops of normalised ``images`` at pixel ``boxes`` for the image tower: CLIPSelf's teacher crop path
        (letterboxed to the input size, or stretched without ``keep_aspect``), so the ``crops`` baseline is what
        CLIPSelf distils."""
        return teacher_crops(images, boxes, self.input_size[0], self._mean, self._std, keep_aspect=keep_aspect)

    def dense(self, mode: str) -> DenseEncoder:
        """images -> (B, D, h, w) unit-norm dense map in dense mode ``mode`` (a model with its own segmenter: each
        location takes its segment's embedding, whatever ``mode``)."""
        def run(images: Tensor) -> Tensor:
            if self.segmenter is not None:
                return self.segmenter.dense(images.to(self.device))
            return encode_dense(self.bundle.model, images.to(self.device), mode)
        return run

    def segment_logits(self, mode: str, classifier: Tensor, window: int | None = None,
                       stride: int | None = None) -> LogitsFn:
        """images -> (B, C, H, W) cosine scores against ``classifier`` (whole image or sliding window)."""
        def run(images: Tensor) -> Tensor:
            return segment_logits(self.bundle.model, images.to(self.device), classifier, mode, window, stride)
        return run

    def head_segment_logits(self, head: torch.nn.Module, classes: Sequence[str], window: int | None = None,
                            stride: int | None = None) -> LogitsFn:
        """images -> (B, C, H, W) log-probabilities of a trained segmentation head (``tasks.segment``'s
        whole image or sliding window), so a softmax of them is the head's own class probabilities."""
        names = list(classes)

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
