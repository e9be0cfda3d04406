"""Open-vocabulary panoptic segmentation of one image with a ``segmenter/panoptic`` head, and its outputs in the
COCO panoptic format (PNG of segment ids as R + 256 G + 256^2 B, JSON ``segments_info``) and as a picture.

    head = cd.load_head("RUN", bundle)
    result = cd.segment_panoptic(bundle, "photo.png", ["red circle", "sky", "grass"], head, stuff=["sky", "grass"])
    result.ids, result.segments, result.semantic(), result.instances()

``cd.segment(bundle, image, classes, head=panoptic_head)`` keeps its return type (an (H, W) label map: the same
queries' semantic inference); this separate function returns the typed ``PanopticResult``.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image

from ..errors import ConfigError
from ..heads.segmentation import PanopticHead, PanopticResult
from .images import ImageLike, as_pil, one_image
from .overlay import overlay


def as_panoptic_head(head: Any, bundle: Any) -> PanopticHead:
    """A loaded panoptic head (a path is loaded on ``bundle``; another head kind is refused)."""
    from ..heads.expect import load_expected

    return load_expected(head, bundle, "panoptic")   # type: ignore[return-value]


def _pixels(image: ImageLike) -> torch.Tensor:
    if isinstance(image, torch.Tensor):
        image = image[0] if image.ndim == 4 else image
        if image.shape[0] != 3:
            raise ConfigError(f"image tensor: expected (3, H, W) in [0, 1], got {tuple(image.shape)}")
        return image.float()
    return TF.to_tensor(as_pil(image))


def segment_panoptic(bundle: Any, image: ImageLike, classes: Sequence[str], head: Any, stuff: Sequence[str] = (),
                     clip: Any = None) -> PanopticResult:
    """The panoptic segmentation of one image over ``classes``.

    Args:
        head: a ``segmenter/panoptic`` head (loaded, or its file / run dir, loaded on ``bundle``).
        stuff: which of ``classes`` are stuff (merged into one segment per class); classes the head trained on
            keep their recorded kind, the others are things.
        clip: the CLIP whose mask-pooled score enters the ensemble (default: the head's backbone; e.g. a
            CLIPSelf-refined CLIP loaded with ``load_model``).
    """
    if not classes:
        raise ConfigError("classes: empty list")
    unknown = [s for s in stuff if s not in classes]
    if unknown:
        raise ConfigError(f"stuff: {unknown[:3]} are not among the classes")
    loaded = as_panoptic_head(head, bundle)
    return loaded.panoptic(_pixels(one_image(image, "segment_panoptic")), list(classes), stuff, clip)


def panoptic_png(result: PanopticResult) -> Image.Image:
    """The COCO panoptic PNG of a result: segment id = R + 256 G + 256^2 B (0 = no segment)."""
    ids = result.ids.numpy().astype(np.uint32)
    rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536 % 256], -1).astype(np.uint8)
    return Image.fromarray(rgb)


def panoptic_json(result: PanopticResult, file_name: str, image_id: int = 1) -> dict[str, Any]:
    """The COCO panoptic annotation of a result (category id = 1 + class index), with its categories and score."""
    segments = []
    for segment in result.segments:
        ys, xs = torch.nonzero(result.ids == segment.id, as_tuple=True)
        bbox = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)] \
            if len(xs) else [0, 0, 0, 0]
        segments.append({"id": segment.id, "category_id": segment.label + 1, "iscrowd": 0, "area": segment.area,
                         "bbox": bbox, "isthing": int(segment.isthing), "score": round(segment.score, 4)})
    categories = [{"id": i + 1, "name": name, "isthing": int(any(s.isthing for s in result.segments
                                                                   if s.label == i))}
                  for i, name in enumerate(result.classes)]
    return {"annotations": [{"image_id": image_id, "file_name": file_name, "segments_info": segments}],
            "categories": categories}


def panoptic_picture(image: Image.Image, result: PanopticResult) -> Image.Image:
    """The image blended with the segments' class colours, each thing outlined in white (its instances apart)."""
    picture = overlay(image.convert("RGB"), result.semantic(), result.classes)
    ids = result.ids.numpy()
    things = np.isin(ids, [s.id for s in result.segments if s.isthing])
    edge = np.zeros_like(things)
    edge[:-1] |= ids[:-1] != ids[1:]
    edge[1:] |= ids[1:] != ids[:-1]
    edge[:, :-1] |= ids[:, :-1] != ids[:, 1:]
    edge[:, 1:] |= ids[:, 1:] != ids[:, :-1]
    pixels = np.asarray(picture).copy()
    outline = edge & things
    pixels[:outline.shape[0], :outline.shape[1]][outline] = 255
    return Image.fromarray(pixels)
