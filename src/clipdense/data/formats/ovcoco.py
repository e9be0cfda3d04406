"""Open-vocabulary detection splits: the base classes a detector trains on and the novel ones it must find.

OV-COCO (Bansal et al. 2018, as used by OVR-CNN, ViLD, F-ViT / CLIPSelf): 48 base and 17 novel COCO
categories (the other 15 COCO categories take no part); names as in COCO's instances files. A user with real
COCO passes ``split=ov-coco`` and gets the protocol; a synthetic world carries its own split in world.json.
"""
from __future__ import annotations

from dataclasses import dataclass

from ...errors import ConfigError

OV_COCO_BASE: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "train", "truck", "boat", "bench", "bird", "horse", "sheep", "bear",
    "zebra", "giraffe", "backpack", "handbag", "suitcase", "frisbee", "skis", "kite", "surfboard", "bottle", "fork",
    "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli", "carrot", "pizza", "donut", "chair", "bed",
    "toilet", "tv", "laptop", "mouse", "remote", "microwave", "oven", "toaster", "refrigerator", "book", "clock",
    "vase", "toothbrush",
)
OV_COCO_NOVEL: tuple[str, ...] = (
    "airplane", "bus", "cat", "dog", "cow", "elephant", "umbrella", "tie", "snowboard", "skateboard", "cup", "knife",
    "cake", "couch", "keyboard", "sink", "scissors",
)


@dataclass(frozen=True)
class DetectionSplit:
    """Base classes (trained on) and novel classes (evaluated, never trained on) of a protocol."""

    name: str
    base: tuple[str, ...]
    novel: tuple[str, ...]


#: shipped protocols by name (``--objective-arg split=NAME``)
DETECTION_SPLITS: dict[str, DetectionSplit] = {
    "ov-coco": DetectionSplit("ov-coco", OV_COCO_BASE, OV_COCO_NOVEL),
}


def detection_split(name: str) -> DetectionSplit:
    """The shipped split called ``name``; ConfigError lists the known ones."""
    if name not in DETECTION_SPLITS:
        raise ConfigError(f"split {name!r}: unknown detection split; shipped: {sorted(DETECTION_SPLITS)}")
    return DETECTION_SPLITS[name]
