"""Trainable heads on a frozen backbone, saved as heads: one self-describing file for every kind.

    head = cd.load_head("coop.safetensors", bundle)   # refused unless bundle holds the weights it was trained on
    cd.save_head(head, "copy.safetensors", bundle)

Few-shot adapters register as ``adapter/<method>``; detection and segmentation heads register their
own kinds with ``register_head_kind`` and are read by the same ``load_head``.
"""
from .io import (HEAD_FILE, Backbone, HeadInfo, check_backbone, latest_run_head, load_head, read_head_info,
                 save_head)
from .registry import HEAD_KINDS, HeadKind, find_head_kind, kind_of, known_head_kinds, register_head_kind

__all__ = [
    "HEAD_FILE", "Backbone", "HeadInfo", "check_backbone", "latest_run_head", "load_head", "read_head_info",
    "save_head", "HEAD_KINDS", "HeadKind", "find_head_kind", "kind_of", "known_head_kinds", "register_head_kind",
]
