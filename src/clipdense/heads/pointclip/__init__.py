"""PointCLIP's few-shot head: the inter-view adapter on the frozen CLIP's features of a point cloud's depth views
(kind ``pointclip/adapter``), trained by the objective ``pointclip-adapter``."""
from .adapter import InterViewAdapter, InterViewAdapterConfig

__all__ = ["InterViewAdapter", "InterViewAdapterConfig"]
