"""GLIPv2's instance masks on a GLIP head: a class-agnostic Mask R-CNN branch on the *fused* pyramid.

GLIPv2 (Zhang et al. 2022) adds an instance-segmentation head to the grounding model, so one fused representation
gives boxes, masks and (``vqa.py``) answers. Here the branch is Mask R-CNN's (He et al. 2017) as torchvision builds
it - RoIAlign 14x14 over the pyramid levels, four 3x3 convs, a deconvolution and one 28x28 mask logit per region -
class-agnostic like F-ViT's, because a grounding head's "classes" are whatever words the prompt holds. It reads the
image levels *after* the fusion layers, so the prompt shapes the masks as it shapes the boxes.

Training: each foreground location's decoded box (detached, as Mask R-CNN trains on its proposals) is a region;
up to ``samples`` of them per image (random) are pooled and scored by per-pixel BCE against the mask of the box the
location was assigned to, cropped and resized to the region (torchvision's ``maskrcnn_loss``). Samples without
masks give no mask loss. Inference: the selected boxes' masks, pasted into the image by the detection transform's
``postprocess`` (probabilities; 0.5 is the mask).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import maskrcnn_loss
from torchvision.ops import MultiScaleRoIAlign

from ..detection.pyramid import group_norm

#: RoIAlign's output side for the mask branch (Mask R-CNN: 14, giving 28x28 masks after the deconvolution).
POOL = 14


class GLIPMaskBranch(nn.Module):
    """Class-agnostic mask logits (N, 1, 28, 28) of boxes over the fused levels (finest first)."""

    def __init__(self, channels: int, levels: int, samples: int) -> None:
        super().__init__()
        self.names = [str(i) for i in range(levels)]
        self.samples = samples
        self.pool = MultiScaleRoIAlign(self.names, output_size=POOL, sampling_ratio=2)
        self.head = MaskRCNNHeads(channels, [channels] * 4, 1, norm_layer=group_norm)
        self.predictor = MaskRCNNPredictor(channels, channels, 1)

    def forward(self, levels: Sequence[torch.Tensor], boxes: list[torch.Tensor],
                image_sizes: list[tuple[int, int]]) -> torch.Tensor:
        """Mask logits of ``boxes[i]`` (xyxy in the padded input's pixels) on image i's fused ``levels``."""
        features = dict(zip(self.names, levels))
        return self.predictor(self.head(self.pool(features, boxes, image_sizes)))

    def loss(self, levels: Sequence[torch.Tensor], image_sizes: list[tuple[int, int]], regions: list[torch.Tensor],
             matched: list[torch.Tensor], masks: list[torch.Tensor | None]) -> torch.Tensor | None:
        """Mean per-pixel BCE of up to ``samples`` regions per image against their matched masks.

        ``regions[i]``: image i's foreground locations' predicted boxes; ``matched[i]``: the index of the target box
        each was assigned; ``masks[i]``: (K, H, W) the targets' masks, or None (the image gives no mask loss)."""
        kept_boxes, kept_index, kept_masks = [], [], []
        for boxes, index, mask in zip(regions, matched, masks):
            if mask is None or len(boxes) == 0:
                kept_boxes.append(boxes.new_zeros(0, 4))
                kept_index.append(index.new_zeros(0))
                kept_masks.append(torch.zeros(0, 1, 1, device=boxes.device))
                continue
            if len(boxes) > self.samples:
                pick = torch.randperm(len(boxes), device=boxes.device)[:self.samples]
                boxes, index = boxes[pick], index[pick]
            kept_boxes.append(boxes.detach())
            kept_index.append(index)
            kept_masks.append(mask)
        if sum(len(b) for b in kept_boxes) == 0:
            return None
        logits = self(levels, kept_boxes, image_sizes)
        used = [i for i, b in enumerate(kept_boxes) if len(b)]
        agnostic = [torch.zeros(len(m), dtype=torch.long, device=m.device) for m in kept_masks]   # the one channel
        return maskrcnn_loss(logits, [kept_boxes[i] for i in used], [kept_masks[i] for i in used],
                             [agnostic[i] for i in used], [kept_index[i] for i in used])


__all__ = ["GLIPMaskBranch"]
