"""Open-vocabulary detection heads on a frozen CLIP ViT (F-ViT, ViLD), built from torchvision's detection parts.

    head = cd.load_head("runs/fvit", bundle)                 # kind detector/fvit or detector/vild
    found = head.detect([pixels], ["red circle", "blue star"])  # any class names: novel ones score by text

Each detector class registers as a head kind here, so ``load_head`` reads both.
"""
from __future__ import annotations

from typing import Any, Mapping

from ..registry import HeadKind, register_head_kind
from .config import DetectorConfig, default_taps, resolve_config
from .detector import DETECTORS, Detector, FViTDetector, RegionOutputs, TrainingStep, ViLDDetector
from .pyramid import ViTPyramid
from .scoring import ensemble_scores, select_detections


def _builder(cls: type[Detector]):
    def build(config: Mapping[str, Any], bundle: Any, classes: list[str] | None) -> Detector:
        return cls(bundle, DetectorConfig.from_json(config), classes or [])
    return build


for _cls in DETECTORS.values():
    register_head_kind(HeadKind(name=_cls.kind, module_type=_cls, build=_builder(_cls),
                                config_of=lambda head: head.config.to_json(),
                                classes_of=lambda head: list(head.classes)))

__all__ = [
    "DETECTORS", "Detector", "DetectorConfig", "FViTDetector", "RegionOutputs", "TrainingStep", "ViLDDetector",
    "ViTPyramid", "default_taps", "ensemble_scores", "resolve_config", "select_detections",
]
