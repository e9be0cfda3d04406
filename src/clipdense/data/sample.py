"""The one training example every reader yields: an image, its key, and whichever annotations the data has.

Readers fill the fields their format carries and leave the rest ``None``; objectives declare the
fields they need (``Objective.required_fields``) and the engine refuses data that lacks one before
training starts. Nothing rides in a slot meant for something else.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

import torch
from PIL import Image

if TYPE_CHECKING:
    from .audio import Waveform
    from .federated import Federated
    from .phrases import Phrases
    from .questions import Question

#: Optional annotation fields, in the order error messages list them.
FIELDS: tuple[str, ...] = ("caption", "boxes", "labels", "masks", "semantic", "image_label", "points", "audio",
                            "depth", "frames", "phrases", "federated", "question")
FIELD_DOCS: dict[str, str] = {
    "caption": "a caption string",
    "boxes": "boxes (N, 4) float xyxy pixels",
    "labels": "one class index per box, into the reader's class list",
    "masks": "instance masks (N, H, W) bool, one per box",
    "semantic": "a semantic label map (H, W) long, ignore_index where unlabelled",
    "image_label": "one class index for the whole image",
    "points": "a point cloud (N, 3) float xyz (image None; image_label is the shape's class)",
    "depth": "a metric depth map (H, W) float metres, 0 where unknown",
    "frames": "video frames (T, H, W, 3) uint8 RGB, sampled by the reader (image None for video data)",
    "audio": "a sound: mono waveform (T,) float in [-1, 1] + its sample rate (image None for sound-only data)",
    "federated": "LVIS federated labels: classes verified absent and classes not exhaustively boxed",
    "phrases": "grounded phrases: a caption's character spans and the phrase of each box (data.phrases.Phrases)",
    "question": "a question about the image with its annotators' answers and answer type (data.questions.Question)",
}


@dataclass
class Sample:
    """One image with its annotations.

    Args:
        image: the decoded RGB image.
        key: a name for the sample (file stem, shard key) used in messages and caches.
        caption: paired text (image-text data).
        boxes: (N, 4) float32 xyxy in pixels of ``image``.
        labels: (N,) int64 class indices into the reader's ``classes`` (contiguous, 0-based).
        masks: (N, H, W) bool instance masks aligned with ``boxes``.
        semantic: (H, W) int64 class indices, ``ignore_index`` where unlabelled.
        image_label: class index of the whole image (classification data).
        points: (N, 3) float32 xyz of a point cloud (ModelNet); ``image`` is None and ``image_label`` the
            shape's class.
        depth: (H, W) float32 metric depth in metres aligned with ``image``, 0 where unknown (NYU-style).
        audio: a ``clipdense.data.audio.Waveform`` (samples (T,) float32, sample_rate); ``image`` is None for
            sound-only data (ESC-50, UrbanSound8K), set for image-sound-text triplets.
        frames: (T, H, W, 3) uint8 RGB frames of a video clip, sampled by the reader (uniform or at a frame
            rate); ``image`` is None for video data, ``caption`` / ``image_label`` the clip's.
        phrases: a ``clipdense.data.phrases.Phrases``: the caption's grounded phrases (character spans) and, per
            row of ``boxes``, the phrase it belongs to (grounding data: modulated COCO, Flickr30k Entities).
        federated: a ``clipdense.data.federated.Federated``: LVIS's classes verified absent from the image and
            those whose instances are not all boxed (every other class without a box is unknown there).
        question: a ``clipdense.data.questions.Question``: a question about the image, its annotators' answers and
            their types (VQAv2); no geometry, so transforms carry it untouched.
        ignore_index: the unlabelled value of ``semantic``.
    """

    image: Image.Image | None
    key: str
    caption: str | None = None
    boxes: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    masks: torch.Tensor | None = None
    semantic: torch.Tensor | None = None
    image_label: int | None = None
    points: torch.Tensor | None = None
    audio: "Waveform | None" = None
    depth: torch.Tensor | None = None
    frames: torch.Tensor | None = None
    phrases: "Phrases | None" = None
    federated: "Federated | None" = None
    question: "Question | None" = None
    ignore_index: int = 255

    def fields(self) -> frozenset[str]:
        """The optional fields this sample carries."""
        return frozenset(name for name in FIELDS if getattr(self, name) is not None)

    def replace(self, **changes: object) -> "Sample":
        """A copy with some fields changed (transforms never modify a reader's sample in place)."""
        return dataclasses.replace(self, **changes)


def describe_fields(fields: Iterable[str]) -> str:
    """'boxes, labels' or 'images only' for messages."""
    names = [name for name in FIELDS if name in set(fields)]
    return ", ".join(names) if names else "images only"
