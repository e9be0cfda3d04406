"""The demo's configuration and the command line that reproduces it (read by the pipeline and the report)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..models import DENSE_MODES


@dataclass
class DemoConfig:
    """Sizes chosen so the full demo ends in under 10 minutes on 2 CPU cores; ``quick`` in about 1."""

    out: str = "runs/demo"
    quick: bool = False
    model: str = "tiny-vit-t8"
    pretrained: str | None = "synthworld"  # the shipped weights; None (--from-scratch) pretrains here first
    train_scenes: int = 3000
    val_scenes: int = 100
    image_size: int = 64
    pretrain_steps: int = 1500
    pretrain_batch: int = 64
    pretrain_lr: float = 2e-3
    distill_steps: int = 200
    distill_batch: int = 16
    distill_lr: float = 3e-4
    # what distillation trains and how it pools: the published recipe is ("blocks", True); on this tiny tower
    # the whole tower with raw-feature pooling reads things better (docs/results/clipself.md, issue 19's ablation)
    distill_train: str = "tower"
    distill_normalize_patches: bool = False
    # the students' input (and the dense maps' reading size): this 64-px tower reads things best from 80-96 px
    # maps (docs/results/clipself.md, issue 19's student-size rows: 96 px 80 % of the teacher's crops, 128 px 74 %)
    student_size: int = 96
    global_guard: float = 1.0
    catseg_steps: int = 160            # the Cat-Seg head trained on the start model (issue 21); 0 skips it
    catseg_batch: int = 8
    catseg_lr: float = 1e-3
    detect_steps: int = 160            # each F-ViT detector (issue 20): start model, CLIPSelf; 0 skips them
    detect_batch: int = 4
    detect_lr: float = 2e-3
    detect_backbone: str = "clipself boxes"  # the CLIPSelf run whose backbone the second detector freezes
    templates: str = "world"
    dense_modes: list[str] = field(default_factory=lambda: list(DENSE_MODES))
    overlays: int = 4
    seed: int = 0
    device: str | None = "cpu"


QUICK = {"train_scenes": 200, "val_scenes": 24, "pretrain_steps": 40, "pretrain_batch": 32,
         "distill_steps": 6, "distill_batch": 8, "overlays": 2, "catseg_steps": 4, "catseg_batch": 4,
         "detect_steps": 4, "detect_batch": 2}


def resolve_demo_config(config: DemoConfig) -> DemoConfig:
    """Apply ``quick`` sizes (flags the user set explicitly are not overridden by the caller)."""
    return dataclasses.replace(config, **QUICK) if config.quick else config


FLAGGED = ("out", "model", "pretrained", "pretrain_steps", "distill_steps", "device")


def demo_command(config: DemoConfig) -> str:
    """The `clipdense demo` line that reproduces ``config``, so a report names how it was made.

    Settings that have no flag (set through ``--config``) are listed after it as key=value.
    """
    base = resolve_demo_config(DemoConfig(quick=config.quick))
    words = ["clipdense demo"] + (["--quick"] if config.quick else [])
    if config.pretrained is None:
        words.append("--from-scratch")
    for name in FLAGGED:
        value = getattr(config, name)
        if value != getattr(base, name) and value is not None:
            words.append(f"--{name.replace('_', '-')} {value}")
    others = [f.name for f in dataclasses.fields(DemoConfig) if f.name not in FLAGGED + ("quick",)
              and getattr(config, f.name) != getattr(base, f.name)]
    return " ".join(words) + ("".join(f" [{n}={getattr(config, n)}]" for n in others) if others else "")
