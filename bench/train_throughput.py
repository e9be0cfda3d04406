"""Contrastive pretraining step throughput (issue 7): our engine vs a plain open_clip step, same run.

For each model (ViT-B-32 batch 512, ViT-B-16 256, ViT-L-14 128) and objective (clip, siglip, silc):
images/s, TFLOP/s (FlopCounterMode on one step), MFU against a bf16 matmul peak measured in this
run, peak memory. "ours" is the real engine: a ``Trainer`` built on the objective, run through
``Trainer.fit`` on a device-resident random batch (a hook times each step). The baseline is
open_clip's model + its ClipLoss + AdamW under bf16 autocast, eager and torch.compile. With
``--shards`` the data pipeline is measured too: the engine's own (decode in N workers, augment in
the main thread), the same with its CUDA defaults (threaded augmentation, batches built ahead and
pinned), and decode+augment both in N workers.

    python bench/train_throughput.py --models ViT-B-16:256 --shards '/tmp/w/shards/train-*.tar' \
        --out runs/bench/train_b16.json
    python bench/train_throughput.py --smoke --device cpu --out /tmp/train_smoke.json
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any, Callable

import open_clip
import torch
from PIL import Image
from torch.utils.data import DataLoader, IterableDataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (bench/ is a folder of scripts, not a package)

from clipdense.data import ImageTextDataset  # noqa: E402
from clipdense.models import load_model  # noqa: E402
from clipdense.models.registry import register_builtin_configs  # noqa: E402
from clipdense.objectives import build_objective  # noqa: E402
from clipdense.train.config import TrainConfig  # noqa: E402
from clipdense.data.sample import Sample  # noqa: E402
from clipdense.train.data import BatchStream, PrefetchedBatches, sample_seed  # noqa: E402
from clipdense.train.engine import Trainer  # noqa: E402
from clipdense.objectives.base import Objective  # noqa: E402
from clipdense.train.sources import StreamingSource  # noqa: E402

DEFAULT_MODELS = "ViT-B-32:512,ViT-B-16:256,ViT-L-14:128"
SMOKE_MODELS = "tiny-vit-t8:4"
# Small DINO head and fewer local crops so silc's smoke step takes a fraction of a second on CPU.
SMOKE_OBJECTIVE_ARGS: dict[str, dict[str, Any]] = {
    "silc": {"out_dim": 512, "hidden_dim": 64, "bottleneck_dim": 32, "local_crops": 2}}
CAPTION = "a photo of a red circle next to a blue square on grass"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_args(parser)
    parser.add_argument("--models", default=None, help=f"NAME:BATCH,... (default {DEFAULT_MODELS})")
    parser.add_argument("--objectives", default="clip,siglip,silc", help="our objectives to time")
    parser.add_argument("--compile-objectives", default="clip",
                        help="objectives also timed with the engine's compile=True ('' = none; off in smoke)")
    parser.add_argument("--compile-backend", default=None,
                        help="torch.compile backend of the open_clip baseline (default inductor; smoke: eager)")
    parser.add_argument("--shards", default=None, help="WebDataset shard pattern for the loader throughput")
    parser.add_argument("--loader-workers", type=int, default=None, help="loader processes (default 16; smoke 1)")
    parser.add_argument("--loader-seconds", type=float, default=None, help="seconds per loader measurement")
    args = parser.parse_args()
    args.models = args.models or (SMOKE_MODELS if args.smoke else DEFAULT_MODELS)
    args.compile_backend = args.compile_backend or ("eager" if args.smoke else "inductor")
    args.loader_workers = args.loader_workers if args.loader_workers is not None else (1 if args.smoke else 16)
    args.loader_seconds = args.loader_seconds or (0.3 if args.smoke else 15.0)
    if args.smoke:
        args.compile_objectives = ""
    return args


def model_specs(text: str) -> list[tuple[str, int]]:
    """'ViT-B-16:256,ViT-L-14:128' -> [(name, batch), ...]."""
    specs = []
    for part in text.split(","):
        name, _, batch = part.strip().partition(":")
        specs.append((name, int(batch or 64)))
    return specs


def random_batch(objective: Objective, batch: int, device: torch.device) -> dict[str, torch.Tensor]:
    """A batch shaped exactly like the objective's own transform makes, with random pixels.

    Token ids are a real caption's (the text tower's cost does not depend on the words).
    """
    transform = objective.sample_transform()
    sample = transform(Sample(Image.new("RGB", (256, 256), (120, 90, 60)), "probe", caption=CAPTION),
                       torch.Generator().manual_seed(0))
    out = {}
    for key, value in sample.items():
        if value.is_floating_point():
            out[key] = torch.randn((batch, *value.shape), device=device)
        else:
            out[key] = value.expand(batch, *value.shape).contiguous().to(device)
    return out


def build_trainer(model_name: str, objective_name: str, batch: int, device: torch.device, smoke: bool,
                  compile_: bool, hooks: list[Callable[[int, Trainer], None]], run_dir: str
                  ) -> tuple[Trainer, dict[str, torch.Tensor]]:
    """Our engine around ``objective_name``, fed the same random device batch every step."""
    bundle = load_model(model_name, device="cpu")
    bundle.model.train()
    options = SMOKE_OBJECTIVE_ARGS.get(objective_name, {}) if smoke else {}
    objective = build_objective(objective_name, bundle, options, total_steps=10**9)
    data = random_batch(objective, batch, device)
    config = TrainConfig(objective=objective_name, model=model_name, steps=10**9, batch_size=batch, lr=5e-4,
                         weight_decay=0.2, warmup_steps=2000, precision="bf16", compile=compile_,
                         checkpoint_every=10**9, log_every=10, device=str(device), objective_args=options)
    trainer = Trainer(config, objective, common.repeat_batch(data), run_dir, bundle.name, device=device,
                      hooks=hooks)
    return trainer, data


def measure_ours(model_name: str, objective_name: str, batch: int, device: torch.device, args: argparse.Namespace,
                 peak: float, compile_: bool) -> dict[str, Any]:
    """One engine config: FLOPs of an eager engine step, then ``Trainer.fit`` timed by a hook."""
    steps, warmup = common.steps_and_warmup(args)
    clock = common.StepClock(device, warmup, steps, args.config_limit_s)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer, _ = build_trainer(model_name, objective_name, batch, device, args.smoke, compile_,
                                   [lambda step, tr: clock.tick()], run_dir)
        compiled, trainer.forward = trainer.forward, trainer.module       # count FLOPs on the eager step
        flops = common.count_flops(lambda: trainer._accumulate_gradients(iter(trainer.batches)))
        trainer.forward = compiled
        common.run_fit(trainer, clock, device)
        return common.rate_fields(clock, batch, flops, peak, device)


def _openclip_optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
    """open_clip's training script's AdamW: no decay on gains, biases and the temperature."""
    def exclude(name: str, p: torch.nn.Parameter) -> bool:
        return p.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name
    named = list(model.named_parameters())
    groups = [{"params": [p for n, p in named if exclude(n, p)], "weight_decay": 0.0},
              {"params": [p for n, p in named if not exclude(n, p)], "weight_decay": 0.2}]
    return torch.optim.AdamW(groups, lr=5e-4, betas=(0.9, 0.98), eps=1e-6)


def openclip_step(model_name: str, batch: int, device: torch.device, backend: str | None
                  ) -> tuple[Callable[[], None], Callable[[], None]]:
    """(step, eager step) of a plain open_clip training step: model + ClipLoss + AdamW, bf16 autocast."""
    register_builtin_configs()
    model = open_clip.create_model(model_name, output_dict=True, device=device)
    model.train()
    tokenizer = open_clip.get_tokenizer(model_name)
    size = open_clip.get_model_preprocess_cfg(model)["size"]
    size = size if isinstance(size, (tuple, list)) else (size, size)
    images = torch.randn(batch, 3, *size, device=device)
    texts = tokenizer([CAPTION]).expand(batch, -1).contiguous().to(device)
    loss_fn, optimizer = open_clip.ClipLoss(), _openclip_optimizer(model)
    forward = torch.compile(model, backend=backend) if backend else model

    def make(fwd: Callable[..., dict[str, torch.Tensor]]) -> Callable[[], None]:
        def step() -> None:
            with torch.autocast(device.type, dtype=torch.bfloat16):
                out = fwd(images, texts)
                loss = loss_fn(out["image_features"], out["text_features"], out["logit_scale"])
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
        return step
    return make(forward), make(model)


def measure_openclip(model_name: str, batch: int, device: torch.device, args: argparse.Namespace, peak: float,
                     backend: str | None) -> dict[str, Any]:
    steps, warmup = common.steps_and_warmup(args)
    step, eager = openclip_step(model_name, batch, device, backend)
    flops = common.count_flops(eager)
    common.reset_peak_memory(device)
    clock = common.StepClock(device, warmup, steps, args.config_limit_s)
    common.run_loop(step, clock)
    return common.rate_fields(clock, batch, flops, peak, device)


class AugmentInWorkers(IterableDataset):
    """Decode and augment inside DataLoader workers (the dataset splits its samples among them)."""

    def __init__(self, dataset: ImageTextDataset, transform: Callable[..., dict[str, torch.Tensor]]) -> None:
        super().__init__()
        self.dataset, self.transform = dataset, transform

    def __iter__(self):
        for sample in self.dataset:
            seed = sample_seed(0, zlib.crc32(str(sample["key"]).encode()))
            yield self.transform(Sample(sample["image"], str(sample["key"]), caption=sample["caption"]),
                                 torch.Generator().manual_seed(seed))


def _endless(make: Callable[[], Any]) -> Any:
    """Re-iterate a finite loader forever (the smoke world has only a few samples)."""
    while True:
        yield from make()


def loader_batches(pipeline: str, pattern: str, objective: Objective, batch: int, workers: int,
                   device: torch.device) -> Any:
    """Iterator of batches: 'engine' = the trainer's BatchStream over N decode workers, augmenting in the
    main thread; 'engine-prefetch' = the same with the CUDA defaults (8 augment threads, 2 batches built
    ahead, pinned); 'workers' = decode + augment both in N DataLoader workers (pinned memory on CUDA)."""
    if pipeline.startswith("engine"):
        dataset = ImageTextDataset(pattern, split="train", shuffle=True, seed=0, rank=0, world_size=1, chunk_size=1)
        threads = 8 if pipeline == "engine-prefetch" else 0
        stream = BatchStream(StreamingSource(dataset, num_workers=workers), objective.sample_transform(), batch,
                             collate=objective.collate, augment_threads=threads)
        if pipeline == "engine":
            return iter(stream)
        return iter(PrefetchedBatches(stream, depth=2, pin_memory=device.type == "cuda"))
    dataset = ImageTextDataset(pattern, split="train", shuffle=True, seed=0, rank=0, world_size=1, chunk_size=batch)
    loader = DataLoader(AugmentInWorkers(dataset, objective.sample_transform()), batch_size=batch,
                        num_workers=workers, collate_fn=objective.collate, pin_memory=device.type == "cuda",
                        prefetch_factor=4 if workers else None)
    return _endless(lambda: iter(loader))


def measure_loader(pipeline: str, pattern: str, model_name: str, objective_name: str, batch: int,
                   args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Images/s of ``pipeline`` after its first batch (worker start-up reported apart)."""
    bundle = load_model(model_name, device="cpu")
    options = SMOKE_OBJECTIVE_ARGS.get(objective_name, {}) if args.smoke else {}
    objective = build_objective(objective_name, bundle, options)
    start = time.perf_counter()
    batches = loader_batches(pipeline, pattern, objective, batch, args.loader_workers, device)
    next(batches)
    startup, images, begin = time.perf_counter() - start, 0, time.perf_counter()
    while time.perf_counter() - begin < args.loader_seconds:
        images += common.first_dim(next(batches))
    elapsed = time.perf_counter() - begin
    del batches
    return {"images_per_s": images / elapsed, "startup_s": startup, "measured_s": elapsed}


def smoke_shards(folder: str) -> str:
    """A few-image synthetic world for the smoke run's loader measurement."""
    from clipdense.data.world.scenes import SynthConfig
    from clipdense.data.world.writers import write_world

    write_world(SynthConfig(out=folder, train=16, val=2, shard_size=8, classify_train_per_class=0,
                            classify_val_per_class=0))
    return f"{folder}/shards/train-*.tar"


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """ours / open_clip images/s for each of our rows, against the same model's baselines."""
    for row in rows:
        if row.get("kind") != "step" or not row["variant"].startswith("ours") or "images_per_s" not in row:
            continue
        for variant, key in (("open_clip eager", "vs_openclip_eager"), ("open_clip compile", "vs_openclip_compile")):
            base = [r for r in rows if r.get("model") == row["model"] and r.get("variant") == variant]
            if base and "images_per_s" in base[0]:
                row[key] = row["images_per_s"] / base[0]["images_per_s"]


STEP_COLUMNS = [("model", "model", ""), ("batch", "batch", "d"), ("variant", "step", ""),
                ("objective", "objective", ""), ("images_per_s", "img/s", ".0f"), ("step_ms", "step ms", ".1f"),
                ("tflop_per_step", "TFLOP/step", ".2f"), ("tflops", "TFLOP/s", ".0f"), ("mfu", "MFU", ".2f"),
                ("peak_mem_gib", "peak GiB", ".1f"), ("vs_openclip_eager", "x open_clip eager", ".2f"),
                ("vs_openclip_compile", "x open_clip compile", ".2f"), ("first_step_s", "1st step s", ".1f")]
LOADER_COLUMNS = [("pipeline", "pipeline", ""), ("objective", "objective", ""), ("workers", "workers", "d"),
                  ("batch", "batch", "d"), ("images_per_s", "img/s", ".0f"), ("startup_s", "start-up s", ".1f")]


def run_steps(args: argparse.Namespace, results: common.Results, device: torch.device, peak: float) -> None:
    objectives = [o for o in args.objectives.split(",") if o]
    compiled = [o for o in args.compile_objectives.split(",") if o]
    for name, batch in model_specs(args.models):
        base = {"kind": "step", "model": name, "batch": batch}
        results.run({**base, "variant": "open_clip eager", "objective": "clip"},
                    lambda: measure_openclip(name, batch, device, args, peak, None), device)
        for objective in objectives:
            results.run({**base, "variant": "ours eager", "objective": objective},
                        lambda o=objective: measure_ours(name, o, batch, device, args, peak, False), device)
        results.run({**base, "variant": "open_clip compile", "objective": "clip"},
                    lambda: measure_openclip(name, batch, device, args, peak, args.compile_backend), device)
        for objective in compiled:
            results.run({**base, "variant": "ours compile", "objective": objective},
                        lambda o=objective: measure_ours(name, o, batch, device, args, peak, True), device)


def run_loaders(args: argparse.Namespace, results: common.Results, device: torch.device, pattern: str) -> None:
    name, batch = model_specs(args.models)[0]
    for objective in [o for o in args.objectives.split(",") if o]:
        for pipeline in ("engine", "engine-prefetch", "workers"):
            row = {"kind": "loader", "pipeline": pipeline, "objective": objective, "model": name,
                   "workers": args.loader_workers, "batch": batch, "shards": pattern}
            results.run(row, lambda p=pipeline, o=objective: measure_loader(p, pattern, name, o, batch, args, device),
                        device)


def main() -> None:
    args = parse_args()
    device, results, peak = common.start_run(args)
    run_steps(args, results, device, peak)
    with tempfile.TemporaryDirectory() as world:
        pattern = args.shards or (smoke_shards(world) if args.smoke else None)
        if pattern:
            run_loaders(args, results, device, pattern)
    add_ratios(results.rows)
    results.write()
    print("\n" + common.summary_line(results.env, peak) + "\n")
    print(common.markdown_table([r for r in results.rows if r["kind"] == "step"], STEP_COLUMNS))
    loaders = [r for r in results.rows if r["kind"] == "loader"]
    if loaders:
        print("\nData pipeline (decode + augment) on " + loaders[0]["shards"] + "\n")
        print(common.markdown_table(loaders, LOADER_COLUMNS))


if __name__ == "__main__":
    main()
