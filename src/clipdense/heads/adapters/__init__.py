"""Few-shot adaptation of a frozen CLIP model: linear probe, CoOp, CoCoOp, MaPLe, CLIP-Adapter, Tip-Adapter(-F).

    result = fit(bundle, "world/classify/train", AdaptConfig(method="coop", shots=4, seed=0))
    save_adapter(result.adapter, "coop.safetensors")
    adapter = load_adapter("coop.safetensors", bundle)      # a head file (kind adapter/coop); same model
                                                            # weights (fingerprint), else a clear error
    probs = adapter.predict(pixels, ["red circle", "blue star"])
"""
from .base import ADAPTERS, Adapter, load_adapter, register_adapter, save_adapter
from .clip_adapter import ClipAdapter
from .cocoop import CoCoOp
from .coop import CoOp
from .fit import AdaptConfig, AdaptResult, base_to_novel, evaluate, fit, train_adapter
from .linear_probe import LinearProbe
from .maple import MaPLe
from .methods import METHODS, TRAINED, ZeroShot, adapter_class, build_adapter
from .protocol import (LabelledImages, ShuffledBatches, base_novel_split, harmonic_mean, read_image_folder,
                       restrict_classes, sample_few_shot)
from .tip_adapter import TipAdapter, TipAdapterF

__all__ = [
    "Adapter", "load_adapter", "register_adapter", "save_adapter", "ClipAdapter",
    "CoCoOp", "CoOp", "AdaptConfig", "AdaptResult", "base_to_novel", "evaluate", "fit", "train_adapter",
    "LinearProbe", "MaPLe", "ADAPTERS", "METHODS", "TRAINED", "ZeroShot", "adapter_class", "build_adapter",
    "LabelledImages", "ShuffledBatches", "base_novel_split", "harmonic_mean", "read_image_folder",
    "restrict_classes", "sample_few_shot", "TipAdapter", "TipAdapterF",
]
