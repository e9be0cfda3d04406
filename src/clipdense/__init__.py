"""clipdense: dense (region- and pixel-level) features for CLIP-style models.

    import clipdense as cd
    bundle = cd.load_model("tiny-vit-s8")
    dense = cd.encode_dense(bundle.model, images, mode="maskclip")
"""
from .errors import ClipDenseError, ConfigError, DataError, ImageLoadError, ModelLoadError
from .heads import load_head, save_head
from .generation import Drawing, draw, read_svg, sketch, write_png, write_svg
from .models import (DENSE_MODES, Bundle, DenseOutput, dense_forward, encode_dense, load_model, pool_boxes,
                     pool_masks, save_weights, text_classifier)
from .tasks import classify_batch, detect_batch, segment_batch
from .tasks import classify, classify_points, depth, detect, segment
from .tasks.audio import encode_audio, use_audio_tower
from .tasks.search import search
from .tasks.ground import ground
from .tasks.vqa import answer
from .tasks.pseudo_label import pseudo_label
from .tasks.panoptic import segment_panoptic
from .tasks.video import classify_video, encode_video, search_videos
from .data.video import FrameSampling, read_video, write_video
from .data.audio import read_audio

__version__ = "0.1.0"
__all__ = [
    "DENSE_MODES", "Bundle", "DenseOutput", "dense_forward", "encode_dense", "load_model", "pool_boxes",
    "pool_masks", "save_weights", "text_classifier", "classify", "classify_points", "depth", "detect", "segment", "load_head", "save_head",
    "classify_batch", "detect_batch", "segment_batch",
    "ClipDenseError", "ConfigError", "DataError", "ImageLoadError", "ModelLoadError",
    "encode_audio", "use_audio_tower", "read_audio", "search", "ground", "answer", "pseudo_label",
    "encode_video", "classify_video", "search_videos", "read_video", "write_video", "FrameSampling",
    "Drawing", "draw", "sketch", "read_svg", "write_svg", "write_png",
    "segment_panoptic",
]
