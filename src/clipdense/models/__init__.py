"""Models: loading, dense forward and its modes, region pooling, text classifiers."""
from .dense import DENSE_MODES, DenseOutput, dense_forward, encode_dense, interpolate_pos_embed, patch_grid
from .dense_modes import NACLIP, SCLIP, ClearCLIP, DenseMode, MaskCLIP, Vanilla, register_mode, resolve_mode
from .towers import TowerFacts, tower_facts
from .loading import Bundle, available_models, latest_run_weights, load_model, model_config, resolve_device
from .pooling import pool_boxes, pool_masks
from .text import TEMPLATE_SETS, resolve_templates, text_classifier
from .weights import read_state_dict, save_weights

__all__ = [
    "DENSE_MODES", "DenseOutput", "dense_forward", "encode_dense", "interpolate_pos_embed", "patch_grid",
    "DenseMode", "Vanilla", "MaskCLIP", "SCLIP", "ClearCLIP", "NACLIP", "register_mode", "resolve_mode",
    "TowerFacts", "tower_facts",
    "Bundle", "available_models", "latest_run_weights", "load_model", "model_config", "resolve_device",
    "pool_boxes", "pool_masks", "TEMPLATE_SETS", "resolve_templates", "text_classifier",
    "read_state_dict", "save_weights",
]
