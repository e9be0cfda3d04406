"""Ship a VQGAN (``clipdense train --objective vqgan``) beside the CLIP weights of its perceptual term.

    python scripts/ship_vqgan.py --run runs/vqgan-synthworld

Writes src/clipdense/models/weights/vqgan/NAME--TAG.{safetensors,md,json}: the ``generator/vqgan`` head file in
fp16 (naming the CLIP it was trained beside), a model card, and the SHA-256 + reconstruction error and codebook use
on a freshly generated world (seed and sizes in the JSON), which tests/test_generation_vqgan.py reproduces.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import platform
import tempfile
import time
from pathlib import Path

import torch
import yaml
from PIL import Image

from clipdense.data.world.scenes import SynthConfig
from clipdense.data.world.writers import write_world
from clipdense.generation.clipasso import photo_tensor
from clipdense.generation.vqgan import VQGAN_WEIGHTS_DIR, load_vqgan
from clipdense.heads import read_head_info, save_head
from clipdense.heads.io import latest_run_head
from clipdense.models.vqgan import VQGAN

#: the card's world: another seed than training (3), so no scene was seen
CARD_WORLD = {"train": 0, "val": 100, "image_size": 64, "seed": 1, "classify_train_per_class": 0,
              "classify_val_per_class": 0}


def card_world(folder: Path) -> Path:
    write_world(SynthConfig(out=str(folder), **CARD_WORLD))
    return folder


@torch.no_grad()
def card_scores(model: VQGAN, world: Path) -> dict[str, float]:
    """Mean |x - x̂| and PSNR (pixels in [0, 1], reconstruction clamped) over the world's val scenes, and codebook
    use (perplexity, distinct codes) over all their latent positions."""
    files = sorted((world / "val" / "images").glob("*.png"))
    x = torch.stack([photo_tensor(Image.open(f).convert("RGB"), CARD_WORLD["image_size"]) for f in files])
    recon, quantised = model(x)
    recon = recon.clamp(0, 1)
    mse = ((recon - x) ** 2).flatten(1).mean(1)
    return {"images": len(files), "l1": round(float((recon - x).abs().mean()), 5),
            "psnr_db": round(float((10 * torch.log10(1 / mse)).mean()), 3), **model.codebook_use(quantised.codes)}


def training_facts(run: Path) -> dict:
    config = yaml.safe_load((run / "config.yaml").read_text())
    last = max((run / "checkpoints").glob("step-*"), key=lambda p: p.stat().st_mtime)
    minutes = (last.stat().st_mtime - (run / "config.yaml").stat().st_mtime) / 60
    keys = ("steps", "batch_size", "lr", "warmup_steps", "weight_decay", "beta1", "beta2", "seed")
    flat = {**config, **config.get("train", {})} if isinstance(config.get("train"), dict) else config
    return {"config": {k: flat.get(k) for k in keys}, "objective_args": flat.get("objective_args"),
            "wall_minutes": round(minutes, 1)}


def card_text(args: argparse.Namespace, record: dict) -> str:
    card, cfg, facts = record["card"], record["config"], record["training"]
    factor = 2 ** (len(cfg["channel_mult"]) - 1)
    return f"""# VQGAN for `{args.model}` / `{args.pretrained}` (taming-transformers' design, small)

A `generator/vqgan` head file (clipdense.models.vqgan): conv encoder and decoder ({cfg['channels']} base channels,
levels x{cfg['channel_mult']}, {cfg['res_blocks']} residual block per level, downsampling x{factor}:
a 64 px picture is {64 // factor}x{64 // factor} codes), a codebook of {cfg['codebook_size']} codes of {cfg['code_dim']} dimensions (commitment
beta {cfg['beta']}, straight-through). Trained with `clipdense train --objective vqgan` (L1 + a perceptual term
on the blocks of `{args.model}` / `{args.pretrained}` in place of LPIPS's VGG, codebook loss, a PatchGAN with a hinge
loss and taming's adaptive weight after a warm-up) on 64 px scenes of the synthetic world (seed 3):
{facts['config']['steps']} steps x batch {facts['config']['batch_size']}, {facts['wall_minutes']} minutes of wall time
on a shared 2-core CPU, one thread. Source run: `{args.run.name}`; objective arguments {facts['objective_args']}.
Stored in fp16 ({record['bytes'] / 1e6:.2f} MB), SHA-256 `{record['sha256']}`. The file names that CLIP (the
perceptual term's), but the VQGAN never runs it: any clipdense CLIP may guide it (`cd.draw(..., method="vqgan")`).

## On a world it never saw (seed {CARD_WORLD['seed']}, {card['images']} val scenes, 64 px)

| measure | value |
|---|---|
| mean absolute error, pixels in [0, 1] | {card['l1']:.4f} |
| PSNR | {card['psnr_db']:.2f} dB |
| codes used / codebook | {card['codes_used']} / {card['codebook_size']} |
| codebook perplexity | {card['perplexity']:.1f} |

Made by (the process had about half of one core: the machine was shared with other jobs):

```
clipdense data synth --out runs/vqgan-world --train 4000 --val 200 --image-size 64 --seed 3 \
    --classify-train-per-class 0 --classify-val-per-class 0 --shard-size 1000
OMP_NUM_THREADS=1 clipdense train --objective vqgan --model {args.model} --pretrained {args.pretrained} \
    --data runs/vqgan-world --out runs/vqgan-synthworld --steps 1500 --batch-size 16 --lr 0.0005 \
    --warmup-steps 50 --weight-decay 0 --beta1 0.5 --beta2 0.9 --device cpu --num-workers 0 \
    --checkpoint-every 250 --seed 0 --objective-arg disc_start=600
python scripts/ship_vqgan.py --run runs/vqgan-synthworld
```

Reproduced by `tests/test_generation_vqgan.py`. It knows only the synthetic world (flat shapes on textured
backgrounds, at 64 px): a working example and a test fixture, not a model of real pictures.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, type=Path)
    parser.add_argument("--model", default="tiny-vit-t8")
    parser.add_argument("--pretrained", default="synthworld")
    args = parser.parse_args()
    torch.set_num_threads(1)
    source = latest_run_head(args.run)
    model = load_vqgan(source)
    VQGAN_WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
    target = VQGAN_WEIGHTS_DIR / f"{args.model}--{args.pretrained}.safetensors"
    save_head(model.half(), target, read_head_info(source).backbone,
              {"clipdense.source_run": args.run.name, "clipdense.source_step": source.parent.name})
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    with tempfile.TemporaryDirectory() as tmp:
        card = card_scores(load_vqgan(target), card_world(Path(tmp) / "world"))
    record = {"file": target.name, "sha256": digest, "bytes": target.stat().st_size,
              "config": read_head_info(target).config["vqgan"], "card_world": CARD_WORLD, "card": card,
              "training": training_facts(args.run), "made": time.strftime("%Y-%m-%d"), "machine": platform.machine()}
    target.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    target.with_suffix(".md").write_text(card_text(args, record))
    print(json.dumps(card, indent=1))


if __name__ == "__main__":
    main()
