"""Region features from a dense map: RoIAlign over boxes, masked mean over masks."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from ..data.transforms import letterbox_fit
from ..errors import DataError

BOX_TOLERANCE = 1.0  # pixels a box may overhang the image (rounding in annotation files)


def _check_boxes(boxes: torch.Tensor, image_size: tuple[int, int], index: int) -> None:
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise DataError(f"boxes[{index}]: expected shape (N, 4) in x1,y1,x2,y2 pixels, got {tuple(boxes.shape)}")
    if boxes.numel() == 0:
        return
    height, width = image_size
    bad = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
    outside = (boxes[:, :2] < -BOX_TOLERANCE).any(1) | (boxes[:, 2] > width + BOX_TOLERANCE) | \
              (boxes[:, 3] > height + BOX_TOLERANCE)
    if bad.any():
        raise DataError(f"boxes[{index}]: empty box {boxes[bad][0].tolist()} (need x2 > x1 and y2 > y1)")
    if outside.any():
        raise DataError(f"boxes[{index}]: box {boxes[outside][0].tolist()} lies outside the "
                        f"{width}x{height} image")


def pool_boxes(dense: torch.Tensor, boxes: Sequence[torch.Tensor] | torch.Tensor,
               image_size: tuple[int, int], validate: bool = True) -> torch.Tensor:
    """One feature per box: RoIAlign to 1x1 (aligned, adaptive sampling), as CLIPSelf does.

    Args:
        dense: (B, D, h, w) dense map of images of ``image_size`` (H, W) pixels.
        boxes: per image an (N_i, 4) tensor of x1, y1, x2, y2 in image pixels.
        validate: check every box lies in the image (a GPU sync per image; training code that made
            its own boxes turns it off).
    Returns:
        (sum N_i, D) features, in the order of the boxes.
    """
    if isinstance(boxes, torch.Tensor):
        boxes = [boxes] if boxes.ndim == 2 and dense.shape[0] == 1 else list(boxes)
    if len(boxes) != dense.shape[0]:
        raise DataError(f"pool_boxes: {len(boxes)} box lists for {dense.shape[0]} images")
    height, width = image_size
    scale = torch.tensor([dense.shape[-1] / width, dense.shape[-2] / height] * 2, device=dense.device)
    scaled = []
    for index, image_boxes in enumerate(boxes):
        image_boxes = image_boxes.to(device=dense.device, dtype=torch.float32)
        if validate:
            _check_boxes(image_boxes, image_size, index)
        scaled.append((image_boxes * scale).to(dense.dtype))
    pooled = roi_align(dense, scaled, output_size=(1, 1), spatial_scale=1.0, sampling_ratio=-1, aligned=True)
    return pooled.flatten(1)


def pool_masks(dense: torch.Tensor, masks: Sequence[torch.Tensor]) -> torch.Tensor:
    """One feature per mask: mean of the dense map weighted by the mask's coverage of each cell.

    Args:
        dense: (B, D, h, w).
        masks: per image an (N_i, H, W) boolean (or [0, 1]) tensor at any resolution.
    Returns:
        (sum N_i, D) features.
    """
    if len(masks) != dense.shape[0]:
        raise DataError(f"pool_masks: {len(masks)} mask stacks for {dense.shape[0]} images")
    out = []
    for index, image_masks in enumerate(masks):
        if image_masks.ndim != 3:
            raise DataError(f"masks[{index}]: expected shape (N, H, W), got {tuple(image_masks.shape)}")
        if image_masks.shape[0] == 0:
            continue
        weights = F.interpolate(image_masks[:, None].to(dense.device, torch.float32),
                                size=dense.shape[-2:], mode="area")[:, 0]
        total = weights.flatten(1).sum(1)
        if (total <= 0).any():
            raise DataError(f"masks[{index}]: mask {int((total <= 0).nonzero()[0])} is empty")
        feats = torch.einsum("nhw,dhw->nd", weights.to(dense.dtype), dense[index])
        out.append(feats / total[:, None].to(dense.dtype))
    if not out:
        return dense.new_zeros((0, dense.shape[1]))
    return torch.cat(out)


def expand_boxes(boxes: torch.Tensor, scale: torch.Tensor | float, height: float, width: float) -> torch.Tensor:
    """Scale xyxy boxes about their centres by ``scale`` (per box or scalar), clipped to the image.

    The one expansion rule for CLIPSelf's teacher crops and the evaluation's ``crops`` baseline;
    normalised boxes use ``height = width = 1``.
    """
    scale = torch.as_tensor(scale, dtype=boxes.dtype, device=boxes.device)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]) / 2 * scale.reshape(-1, 1)
    out = torch.cat([centre - half, centre + half], dim=1)
    limit = torch.tensor([width, height, width, height], dtype=boxes.dtype, device=boxes.device)
    return torch.minimum(out.clamp_min(0), limit)


def crop_boxes(images: torch.Tensor, boxes: Sequence[torch.Tensor], size: tuple[int, int],
               keep_aspect: bool = False, fill: Sequence[float] | torch.Tensor | float = 0.0) -> torch.Tensor:
    """(sum N_i, C, *size) crops of ``images`` (B, C, H, W) at xyxy pixel ``boxes``, resized by RoIAlign
    (bilinear, averaging several samples per output pixel when shrinking).

    The one crop path: CLIPSelf's teacher embeds exactly these crops, and the evaluation's ``crops``
    baseline is measured on them, so that baseline is the signal CLIPSelf distils.

    Args:
        keep_aspect: letterbox each crop (``data.transforms.letterbox_fit``, the rule of the ``Letterbox`` op):
            its longer side fills ``size``, the rest padded at the bottom and right (CLIPSelf's ``ResizeLongest``);
            otherwise every crop is stretched to ``size``.
        fill: the padding value per channel, in the units of ``images`` (for normalised images, the
            normalised value of a black pixel: ``-mean / std``).
    """
    flat = [b.float().reshape(-1, 4) for b in boxes]
    if not keep_aspect:
        return roi_align(images.float(), flat, output_size=size, spatial_scale=1.0, sampling_ratio=-1, aligned=True)
    out_h, out_w = size
    fill_values = torch.as_tensor(fill, dtype=torch.float32).reshape(-1, 1, 1)
    crops = []
    for index, image_boxes in enumerate(flat):
        for box in image_boxes:
            _, new_w, new_h = letterbox_fit(float(box[2] - box[0]), float(box[3] - box[1]), (out_h, out_w))
            canvas = fill_values.expand(images.shape[1], out_h, out_w).clone()
            canvas[:, :new_h, :new_w] = roi_align(images[index:index + 1].float(), [box[None]], (new_h, new_w),
                                                  spatial_scale=1.0, sampling_ratio=-1, aligned=True)[0]
            crops.append(canvas)
    if not crops:
        return images.new_zeros((0, images.shape[1], out_h, out_w), dtype=torch.float32)
    return torch.stack(crops)


def teacher_crops(images: torch.Tensor, boxes: list[torch.Tensor], size: int, mean: Sequence[float],
                  std: Sequence[float], keep_aspect: bool = True) -> torch.Tensor:
    """Crops of normalised ``images`` at pixel ``boxes`` as CLIPSelf's teacher sees them: ``size`` x ``size``,
    longest side resized and the rest padded black (``keep_aspect``), or stretched. The evaluation's
    ``crops`` baseline calls this too, so it measures exactly the signal CLIPSelf distils."""
    black = [-m / s for m, s in zip(mean, std)]
    return crop_boxes(images, boxes, (size, size), keep_aspect=keep_aspect, fill=black)
