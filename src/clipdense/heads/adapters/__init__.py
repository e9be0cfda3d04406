"""Few-shot adapters on a frozen CLIP model: linear probe, CoOp, CoCoOp, MaPLe, CLIP-Adapter, Tip-Adapter(-F).

Each method is a head (kind ``adapter/<method>``) whose architecture is its ``Config`` dataclass; the trained ones
are fitted by the objectives of the same name (``clipdense.objectives.fewshot``) on the one engine, and
``clipdense.tasks.adapt`` runs the few-shot protocol around them.

    adapter = load_adapter("coop.safetensors", bundle)      # a head file; same model weights (fingerprint),
                                                            # else a clear error
    probs = adapter.predict(pixels, ["red circle", "blue star"])
"""
from .base import ADAPTERS, Adapter, AdapterConfig, accuracy, load_adapter, register_adapter, save_adapter
from .clip_adapter import ClipAdapter, ClipAdapterConfig
from .cocoop import CoCoOp
from .coop import CoOp, CoOpConfig, PromptConfig
from .linear_probe import LinearProbe, LinearProbeConfig
from .maple import MaPLe, MaPLeConfig
from .methods import METHODS, TRAINED, ZeroShot, adapter_class, build_adapter
from .tip_adapter import TipAdapter, TipAdapterConfig, TipAdapterF

__all__ = [
    "ADAPTERS", "Adapter", "AdapterConfig", "accuracy", "load_adapter", "register_adapter", "save_adapter",
    "ClipAdapter", "ClipAdapterConfig", "CoCoOp", "CoOp", "CoOpConfig", "PromptConfig", "LinearProbe",
    "LinearProbeConfig", "MaPLe", "MaPLeConfig", "METHODS", "TRAINED", "ZeroShot", "adapter_class",
    "build_adapter", "TipAdapter", "TipAdapterConfig", "TipAdapterF",
]
