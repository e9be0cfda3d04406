"""`clipdense demo`: the whole story on one machine, stage by stage, every number measured here."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any, Callable

from ..config import atomic_write_bytes, save_config
from ..data.world.scenes import SynthConfig
from ..data.world.writers import write_world
from ..errors import ConfigError
from ..evaluation import evaluate
from ..models import load_model
from ..objectives.clipself import TRAINABLE
from ..train.config import TrainConfig
from ..train.run import run_training
from .config import DemoConfig, resolve_demo_config
from .detection import evaluate_detectors, train_detectors
from .report import write_report

MARKER = "demo.json"
Log = Callable[[str], None]
#: The shipped tiny tower only ever saw square random-resized crops: CLIPSelf's letterboxed teacher crops (black
#: bars) are out of its distribution and wreck the targets (demo world, grid, 300 steps: stuff rois 0.0 and zero-shot
#: 40 % letterboxed against 54.6 and 65 % squashed; docs/results/clipself.md), so the demo squashes its views and
#: the crops baseline alike. Real CLIP towers use the published letterbox (the default).
DEMO_KEEP_ASPECT = False
#: CLIPSelf runs of the demo: (label in the report, run folder, regions, guarded). Boxes are the world's objects
#: (the paper's region variant); the grid is the paper's "image patches" row.
VARIANTS: tuple[tuple[str, str, str, bool], ...] = (
    ("clipself boxes", "clipself-boxes", "boxes", False),
    ("clipself boxes+guard", "clipself-boxes-guard", "boxes", True),
    ("clipself grid", "clipself-grid", "grid", False),
    ("clipself grid+guard", "clipself-grid-guard", "grid", True),
)


#: The demo's Cat-Seg head: bench/segheads.py's CPU recipe (narrowed to 32 channels and 4-patch windows, 12 classes
#: a step, CLIP tensors at the head's lr, naclip cost volume: docs/results/segmentation-heads.md says why), for fewer
#: steps.
CATSEG_ARGS: dict[str, Any] = {"templates": "world", "hidden_dim": 32, "guidance_dim": 32, "window": 4,
                               "decoder_dims": [32, 16], "decoder_guidance_dims": [16, 8], "classes_per_step": 12,
                               "tuned_lr_scale": 1.0, "dense_mode": "naclip"}


def prepare_out(out: Path) -> None:
    """Reuse a previous demo folder; refuse to write into anything else that is not empty."""
    if out.exists() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise ConfigError(f"--out {out}: folder exists and is not a clipdense demo folder; choose another --out")
    stages = ("world", "pretrain", "clipself", "clipself-guard", "eval", "figures", "catseg", "detector-0",
              "detector-1") + tuple(v[1] for v in VARIANTS)
    for stage in stages:
        shutil.rmtree(out / stage, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)


def _train_settings(config: DemoConfig, demo_dir: Path) -> dict[str, Any]:
    """TrainConfig fields every demo run shares."""
    return dict(data=str(demo_dir / "world"), model=config.model, device=config.device, seed=config.seed,
                log_every=10, keep_checkpoints=1, num_workers=0)


def _train_config(config: DemoConfig, demo_dir: Path, **overrides: Any) -> TrainConfig:
    return TrainConfig(**{**_train_settings(config, demo_dir), **overrides})


def stage_world(config: DemoConfig, out: Path) -> dict[str, Any]:
    synth = SynthConfig(out=str(out / "world"), train=config.train_scenes, val=config.val_scenes,
                        image_size=config.image_size, seed=config.seed,
                        classify_train_per_class=1, classify_val_per_class=4 if not config.quick else 1)
    summary = write_world(synth)
    return {"scenes": config.train_scenes + config.val_scenes, "summary": str(summary)}


def stage_pretrain(config: DemoConfig, out: Path) -> tuple[str, str | None]:
    """Pretrain with the clip objective (or use the given weights); returns (model spec, pretrained)."""
    if config.pretrained:
        return config.model, config.pretrained
    train = _train_config(config, out, objective="clip", out=str(out / "pretrain"), steps=config.pretrain_steps,
                          batch_size=config.pretrain_batch, lr=config.pretrain_lr,
                          warmup_steps=max(config.pretrain_steps // 20, 1),
                          checkpoint_every=config.pretrain_steps)
    run_training(train)
    return str(out / "pretrain"), None


def stage_distill(config: DemoConfig, out: Path, model: str, pretrained: str | None, name: str,
                  regions: str, guard: float) -> str:
    """One CLIPSelf run on ``regions``: the views are squashed, not letterboxed (``DEMO_KEEP_ASPECT``), and what
    trains and how regions pool follow the config (``distill_train``, ``distill_normalize_patches``)."""
    args = {"regions": regions, "dense_mode": "maskclip", "student_size": config.student_size,
            "global_guard": guard, "max_regions": 12, "teacher_cache": str(out / "teacher-cache"),
            "keep_aspect": DEMO_KEEP_ASPECT, "train": config.distill_train,
            "normalize_patches": config.distill_normalize_patches}
    train = _train_config(config, out, objective="clipself", out=str(out / name), model=model,
                          pretrained=pretrained, steps=config.distill_steps, batch_size=config.distill_batch,
                          lr=config.distill_lr, warmup_steps=max(config.distill_steps // 10, 1),
                          checkpoint_every=config.distill_steps, objective_args=args)
    run_training(train)
    return str(out / name)


def stage_eval(config: DemoConfig, out: Path, models: dict[str, tuple[str, str | None]],
               log: Log) -> dict[str, Any]:
    """Every model on every task (maskclip dense mode); the start model also in every dense mode. Dense tasks
    read every model at the students' size, so the start model's crops are the teacher's at that size."""
    results: dict[str, Any] = {}
    world = out / "world"
    for label, (spec, pretrained) in models.items():
        bundle = load_model(spec, pretrained, device=config.device)
        modes = config.dense_modes if label == "pretrained" else ["maskclip"]
        log(f"  evaluating {label} ({', '.join(modes)})")
        results[label] = evaluate(bundle, world, tasks="all", dense_mode=modes, templates=config.templates,
                                  device=config.device, batch_size=64, image_size=config.student_size,
                                  task_options={"regions": {"crops": "letterbox" if DEMO_KEEP_ASPECT else "stretch"}})
    (out / "eval").mkdir(exist_ok=True)
    atomic_write_bytes(out / "eval" / "results.json", json.dumps(results, indent=1, default=str).encode())
    return results


def stage_catseg(config: DemoConfig, out: Path, model: str, pretrained: str | None) -> str:
    """A Cat-Seg head on the start model, trained on the world's label maps (its novel things stay unseen)."""
    train = _train_config(config, out, objective="catseg", out=str(out / "catseg"), model=model,
                          pretrained=pretrained, steps=config.catseg_steps, batch_size=config.catseg_batch,
                          lr=config.catseg_lr, weight_decay=1e-4, warmup_steps=max(config.catseg_steps // 10, 1),
                          checkpoint_every=config.catseg_steps,
                          objective_args={**CATSEG_ARGS, "image_size": config.image_size})
    run_training(train)
    return str(out / "catseg")


def stage_catseg_eval(config: DemoConfig, out: Path, model: str, pretrained: str | None, head: str) -> dict[str, Any]:
    """The head beside every training-free dense mode of the start model, on the same images at the head's size."""
    bundle = load_model(model, pretrained, device=config.device)
    result = evaluate(bundle, out / "world", tasks="segmentation", dense_mode=config.dense_modes, head=head,
                      templates=config.templates, device=config.device, batch_size=64, image_size=config.image_size)
    (out / "eval").mkdir(exist_ok=True)
    (out / "eval" / "catseg.json").write_text(json.dumps(result, indent=1, default=str))
    return result


def _train_heads(config: DemoConfig, out: Path, start_model: tuple[str, str | None],
                 models: dict[str, tuple[str, str | None]], timed: Callable[[str, Callable[[], Any]], Any]
                 ) -> dict[str, Any]:
    """The Cat-Seg head and the two F-ViT detectors (each skipped when its steps are 0)."""
    heads: dict[str, Any] = {}
    if config.catseg_steps > 0:
        heads["catseg"] = timed("cat-seg head", lambda: stage_catseg(config, out, *start_model))
    if config.detect_steps > 0:
        backbones = {"F-ViT, start model": start_model,
                     f"F-ViT, {config.detect_backbone}": models[config.detect_backbone]}
        heads["detectors"] = timed("detectors", lambda: train_detectors(
            out, backbones, _train_settings(config, out), config.detect_steps, config.detect_batch, config.detect_lr))
    return heads


def _validate_demo_config(config: DemoConfig) -> None:
    """Refuse a bad setting in one line before any stage runs (not minutes later, inside a stage)."""
    for name in ("catseg_steps", "detect_steps"):
        if getattr(config, name) < 0:
            raise ConfigError(f"{name} {getattr(config, name)}: expected a number of steps >= 0 (0 skips the stage)")
    if config.student_size < 1:
        raise ConfigError(f"student_size {config.student_size}: expected the students' input size in pixels (>= 1)")
    if config.distill_train not in TRAINABLE:
        raise ConfigError(f"distill_train {config.distill_train!r}: expected one of {', '.join(TRAINABLE)}")
    variants = [v[0] for v in VARIANTS]
    if config.detect_steps > 0 and config.detect_backbone not in variants:
        raise ConfigError(f"detect_backbone {config.detect_backbone!r}: expected one of {', '.join(variants)}")


def run_demo(config: DemoConfig, log: Log = print) -> Path:
    """Run every stage into ``config.out`` and write ``report.md``; returns the report's path."""
    config = resolve_demo_config(config)
    _validate_demo_config(config)
    out = Path(config.out)
    prepare_out(out)
    (out / MARKER).write_text(json.dumps({"started": time.strftime("%Y-%m-%d %H:%M:%S")}))
    save_config(config, out / "config.yaml")
    timings: dict[str, float] = {}

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        log(f"[demo] {name} ...")
        start = time.perf_counter()
        value = fn()
        timings[name] = time.perf_counter() - start
        log(f"[demo] {name} done in {timings[name]:.0f} s")
        return value

    timed("synthetic world", lambda: stage_world(config, out))
    start_label = "pretraining (clip)" if not config.pretrained else f"start model ({config.pretrained})"
    start_model = timed(start_label, lambda: stage_pretrain(config, out))
    models = {"pretrained": start_model}
    for label, name, regions, guarded in VARIANTS:
        guard = config.global_guard if guarded else 0.0
        run = timed(label, lambda: stage_distill(config, out, *start_model, name, regions, guard))
        models[label] = (run, None)
    heads = _train_heads(config, out, start_model, models, timed)
    results = timed("evaluation", lambda: stage_eval(config, out, models, log))
    catseg = detection = None
    if "catseg" in heads:
        head = heads["catseg"]
        catseg = (start_model, head, timed("cat-seg evaluation",
                                           lambda: stage_catseg_eval(config, out, *start_model, head)))
    if "detectors" in heads:
        detection = (heads["detectors"], timed("detection evaluation",
                                               lambda: evaluate_detectors(out, heads["detectors"], config.device)))
    report = timed("report", lambda: write_report(config, out, models, results, timings, catseg=catseg,
                                                  detection=detection))
    log(f"[demo] total {sum(timings.values()):.0f} s; report: {report}")
    return report
