"""Tasks: zero-shot segmentation and classification (retrieval, regions, detection and adapters beside)."""
from .audio import classify_audio, encode_audio, use_audio_tower
from .batch import classify_batch, detect_batch, segment_batch
from .classify import classify
from .detect import Detections, detect
from .depth import depth
from .points import classify_points
from .search import search
from .ground import Grounding, ground
from .video import classify_video, encode_video, search_videos
from .segment import BACKGROUND, labels_from_logits, segment, segment_logits

__all__ = ["classify_batch", "detect_batch", "segment_batch", "classify_audio", "encode_audio", "use_audio_tower", "search", "ground", "Grounding", "classify", "classify_points", "depth", "detect", "Detections", "segment", "segment_logits", "labels_from_logits", "BACKGROUND", "classify_video", "encode_video", "search_videos"]
