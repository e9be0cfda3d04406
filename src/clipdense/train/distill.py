"""CLIPSelf's weight ensemble of a finished distillation run (the recipe saves 0.7 student + 0.3 teacher)."""
from __future__ import annotations

from pathlib import Path

from ..models import load_model, save_weights
from ..models.loading import latest_run_weights, model_config
from ..models.weights import META_DENSE_SIZE
from ..objectives.clipself import ensemble_weights
from .config import TrainConfig


def write_ensemble(config: TrainConfig, ratio: float) -> Path:
    """RUN/ensemble.safetensors: ``ratio`` x student + (1 - ratio) x teacher (the CLIPSelf recipe saves 0.7)."""
    run_dir = Path(config.out)
    student = load_model(latest_run_weights(run_dir), device="cpu")
    teacher = load_model(config.model, config.pretrained, device="cpu")
    mixed = ensemble_weights(student.model, teacher.model, ratio)
    path = run_dir / "ensemble.safetensors"
    metadata = {"clipdense.ensemble_ratio": str(ratio)}
    if student.dense_size:
        metadata[META_DENSE_SIZE] = str(student.dense_size)
    save_weights(mixed, path, student.name, model_config(student.name), metadata)
    return path
