"""Region methods by name: how a ground-truth region becomes one embedding (CLIPSelf's protocol has three).

- ``rois``: RoIAlign (1x1) of the dense map on each box: what a detector built on the dense map sees.
- ``crops``: the image embedding of the crop (thing boxes expanded about their centre, clipped to the image),
  at the model's input size: the reference CLIPSelf distils from.
- ``maskpool``: mean of the dense map inside each segment's mask.

Each is one ``RegionMethod`` registered here (like ``models.dense_modes``); a new method is one more
``register_region_method`` call. ``resolve_region_methods`` is the one place names are checked.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import Tensor

from ..errors import ConfigError
from ..models.pooling import crop_boxes, expand_boxes
from .common import DenseEncoder, ImageEncoder, chunks

CropFn = Callable[[Tensor, list[Tensor]], Tensor]                        # crop(images, boxes) -> crops
BoxPooler = Callable[[Tensor, list[Tensor], tuple[int, int]], Tensor]   # pool_boxes(dense, boxes, image_size)
MaskPooler = Callable[[Tensor, list[Tensor]], Tensor]                    # pool_masks(dense, masks)


@dataclass
class RegionBatch:
    """Images of one size with their ground-truth regions (boxes xyxy in pixels of ``images``)."""

    images: Tensor            # (B, 3, H, W) normalised
    boxes: list[Tensor]       # B x (N_i, 4) float
    masks: list[Tensor]       # B x (N_i, H', W') bool, at any resolution (pooling resizes to the map)
    labels: list[Tensor]      # B x (N_i,) class indices


@dataclass(frozen=True)
class RegionEncoders:
    """What the region methods read the model through (each method names the fields it needs).

    Args:
        encode_dense: images -> (B, D, h, w) dense map (``rois``, ``maskpool``).
        encode_image / input_size: image tower and its input size (``crops``).
        crop: ``(images, boxes) -> crops`` at the tower's input size; default ``crop_boxes`` stretched to
            ``input_size`` (the runner passes CLIPSelf's own teacher crops, so ``crops`` is what CLIPSelf distils).
        pool_boxes / pool_masks: region pooling of the dense map (clipdense.models' in practice).
        thing_expand: thing boxes are expanded by this factor about their centre before cropping.
        batch_size: crops per image-tower pass.
        patch_size: the dense map's stride in pixels; with it, thing top-1 is also reported by box size.
    """

    encode_dense: DenseEncoder | None = None
    encode_image: ImageEncoder | None = None
    input_size: tuple[int, int] | None = None
    crop: CropFn | None = None
    pool_boxes: BoxPooler | None = None
    pool_masks: MaskPooler | None = None
    thing_expand: float = 1.5
    batch_size: int = 64
    patch_size: int | None = None


#: (batch, its dense map or None, encoders, (C,) bool thing mask) -> (sum N_i, D) region embeddings
EmbedFn = Callable[[RegionBatch, "Tensor | None", RegionEncoders, Tensor], Tensor]


@dataclass(frozen=True)
class RegionMethod:
    """One registered way of embedding regions.

    Args:
        needs: the ``RegionEncoders`` fields it reads (checked before any image is read).
        dense: it reads the dense map, so it runs once per dense mode (``crops`` runs once).
    """

    name: str
    embed: EmbedFn
    needs: tuple[str, ...]
    dense: bool
    summary: str = ""

    def check(self, encoders: RegionEncoders) -> None:
        """The encoders this method reads are given (a programming error otherwise, named)."""
        missing = [name for name in self.needs if getattr(encoders, name) is None]
        if missing:
            raise ConfigError(f"region method {self.name!r} needs {missing} (got None)")


#: name -> method, in registration order (the default order of ``methods``)
REGION_METHODS: dict[str, RegionMethod] = {}


def register_region_method(method: RegionMethod) -> RegionMethod:
    """Add ``method``; a second one under the same name is a programming error."""
    if method.name in REGION_METHODS or not method.name or "," in method.name:
        raise ValueError(f"region method {method.name!r}: already registered or not a plain name")
    REGION_METHODS[method.name] = method
    return method


def region_method_names() -> tuple[str, ...]:
    """Names of every registered region method (the choices of the regions task's ``methods``)."""
    return tuple(REGION_METHODS)


def resolve_region_methods(methods: str | Sequence[str]) -> tuple[RegionMethod, ...]:
    """'a,b' or names -> the registered methods; unknown or none is one line naming the registered ones."""
    names = [m.strip() for m in (methods.split(",") if isinstance(methods, str) else methods) if m.strip()]
    unknown = [m for m in names if m not in REGION_METHODS]
    if unknown or not names:
        raise ConfigError(f"region methods: unknown {unknown or names}, expected some of {list(REGION_METHODS)}")
    return tuple(REGION_METHODS[m] for m in dict.fromkeys(names))


def _rois(batch: RegionBatch, dense: Tensor | None, enc: RegionEncoders, thing_mask: Tensor) -> Tensor:
    return enc.pool_boxes(dense, batch.boxes, tuple(batch.images.shape[-2:]))


def _maskpool(batch: RegionBatch, dense: Tensor | None, enc: RegionEncoders, thing_mask: Tensor) -> Tensor:
    return enc.pool_masks(dense, batch.masks)


def _crops(batch: RegionBatch, dense: Tensor | None, enc: RegionEncoders, thing_mask: Tensor) -> Tensor:
    height, width = batch.images.shape[-2:]
    expanded = []
    for boxes, labels in zip(batch.boxes, batch.labels):
        scale = torch.where(thing_mask[labels], enc.thing_expand, 1.0).to(boxes.dtype)
        expanded.append(expand_boxes(boxes, scale, height, width))
    crops = enc.crop(batch.images, expanded) if enc.crop is not None else \
        crop_boxes(batch.images, expanded, enc.input_size)
    if not len(crops):
        return torch.zeros(0, 0)
    return torch.cat([enc.encode_image(part).float() for part in chunks(crops, enc.batch_size)])


register_region_method(RegionMethod("rois", _rois, ("encode_dense", "pool_boxes"), dense=True,
                                    summary="RoIAlign 1x1 of the dense map on each box"))
register_region_method(RegionMethod("crops", _crops, ("encode_image", "input_size"), dense=False,
                                    summary="image embedding of each (expanded) crop: what CLIPSelf distils"))
register_region_method(RegionMethod("maskpool", _maskpool, ("encode_dense", "pool_masks"), dense=True,
                                    summary="mean of the dense map inside each mask"))
