"""Trained open-vocabulary segmentation heads on any clipdense backbone: Cat-Seg, LSeg and the panoptic mask
generator (``panoptic``: kind segmenter/panoptic, ODISE's role).

    head = cd.load_head("catseg.safetensors", bundle)        # kind segmenter/catseg, bound to bundle's weights
    labels = cd.segment(bundle, "photo.png", ["cat", "dog", "sofa"], head=head)

Cat-Seg and LSeg fine-tune a few CLIP tensors through deltas the head owns (``tuning``), so the backbone is never changed
and a head file holds everything it learned. They are trained by `clipdense train --objective catseg|lseg`;
the panoptic generator keeps the CLIP frozen (`--objective mask2former`).
"""
from .catseg import CatSegConfig, CatSegHead
from .common import SegHeadConfig, SegmentationHead
from .lseg import SPATIAL_BLOCKS, LSegConfig, LSegHead
from .panoptic import PanopticConfig, PanopticHead
from .panoptic_merge import PanopticResult, Segment
from .tuning import TunedCLIP, TunedTensor, tuned_tensors

SEGMENTATION_HEADS: dict[str, type[SegmentationHead]] = {"catseg": CatSegHead, "lseg": LSegHead}

__all__ = ["CatSegConfig", "CatSegHead", "LSegConfig", "LSegHead", "PanopticConfig", "PanopticHead",
           "PanopticResult", "SEGMENTATION_HEADS", "Segment", "SPATIAL_BLOCKS",
           "SegHeadConfig", "SegmentationHead", "TunedCLIP", "TunedTensor", "tuned_tensors"]
