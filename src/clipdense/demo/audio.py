"""`clipdense demo audio`: sounds in the shipped tiny CLIP's space (well under a minute on 2 cores).

A fresh sounding world (a seed the shipped audio tower never heard) is written; the shipped tower classifies its
single-object sounds zero-shot with text prompts (per ESC-50-style fold) and retrieves val scenes' pictures from
their sounds; four val scenes are drawn as picture + log-mel spectrogram + what their sound matched (top classes,
nearest picture). Everything goes to ``out``: the world, the figures and ``report.md``.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..config import atomic_write_bytes
from ..data import SynthConfig, write_world
from ..data.audio import read_audio
from ..data.world.sound_writer import write_sounds
from ..data.world.sounds import SoundConfig
from ..evaluation import evaluate
from ..models import load_model, text_classifier
from ..models.audio_frontends import LogMel
from ..tasks.audio import audio_tower, prepare_waveform

WORLD = dict(train=0, val=40, image_size=64, seed=7, classify_train_per_class=0, classify_val_per_class=0)
SHOWN = 4


def _spectrogram_image(samples: torch.Tensor, sample_rate: int) -> Image.Image:
    """A log-mel spectrogram as a picture (low frequencies at the bottom, magma-like grey-to-orange ramp)."""
    spec = LogMel(sample_rate, 512, 128, 64)(samples[None])[0].flip(0).numpy()
    norm = np.clip((spec - spec.max() + 8.0) / 8.0, 0, 1)   # the top 8 nepers of dynamic range
    rgb = np.stack([norm ** 0.7, norm ** 1.6, 0.35 * (1 - norm) * norm + norm ** 4], axis=-1)
    return Image.fromarray((rgb * 255).astype(np.uint8)).resize((256, 96), Image.NEAREST)


@torch.no_grad()
def _matches(bundle, world: Path, out: Path) -> list[str]:
    head, vocab = audio_tower(bundle), list(bundle_things(world))
    keys = [f"{i:06d}" for i in range(WORLD["val"])]
    images = torch.stack([bundle.preprocess(Image.open(world / "val" / "images" / f"{k}.png").convert("RGB"))
                          for k in keys])
    image_emb = F.normalize(bundle.model.encode_image(images).float(), dim=-1)
    classes = text_classifier(bundle, vocab, "world")
    captions = dict(zip(keys, (line.split(",", 2)[2].strip('"') for line in
                               (world / "audio" / "val.csv").read_text().splitlines()[1:])))
    lines = ["| picture | its sound (log-mel, 2 s) | caption | top-3 classes from the sound | nearest picture |",
             "|---|---|---|---|---|"]
    for key in keys[:SHOWN]:
        wave = read_audio(world / "audio" / "scenes" / "val" / f"{key}.wav")
        emb = F.normalize(head.encode_audio(prepare_waveform(head, wave, key, say=None)).float().mean(0), dim=-1)
        probs = (head.scales()[1].float() * emb @ classes.T).softmax(-1)
        top = ", ".join(f"{vocab[i]} {100 * float(probs[i]):.0f}%" for i in probs.topk(3).indices)
        nearest = keys[int((image_emb @ emb).argmax())]
        _spectrogram_image(wave.samples, wave.sample_rate).save(out / f"sound-{key}.png")
        Image.open(world / "val" / "images" / f"{key}.png").resize((96, 96), Image.NEAREST).save(out / f"image-{key}.png")
        Image.open(world / "val" / "images" / f"{nearest}.png").resize((96, 96), Image.NEAREST).save(
            out / f"nearest-{key}.png")
        lines.append(f"| ![](image-{key}.png) | ![](sound-{key}.png) | {captions[key]} | {top} | "
                     f"![](nearest-{key}.png) {'(itself)' if nearest == key else nearest} |")
    return lines


def _at(recalls: dict, k: int) -> float:
    """recall@k whether the result's keys are ints or (after JSON) strings."""
    return float(recalls[k] if k in recalls else recalls[str(k)])


def bundle_things(world: Path) -> list[str]:
    import json
    return json.loads((world / "world.json").read_text())["things"]


def run_audio_demo(out: Path, log: Callable[[str], None]) -> Path:
    """Write the world, score the shipped tower, draw four scenes; returns ``out/report.md``."""
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    world = out / "world"
    write_world(SynthConfig(out=str(world), **WORLD), overwrite=True)
    write_sounds(world, SoundConfig(single_per_class=5))
    log(f"sounding world written to {world} ({time.perf_counter() - start:.0f} s)")
    bundle = load_model("tiny-vit-t8", pretrained="synthworld", device="cpu")
    head = audio_tower(bundle)
    zero = evaluate(bundle, f"esc50:root={world / 'audio' / 'esc50'}", tasks="audio-zeroshot", templates="world",
                    device="cpu")["tasks"]["audio-zeroshot"]
    retrieval = evaluate(bundle, world, tasks="audio-retrieval", templates="world",
                         device="cpu")["tasks"]["audio-retrieval"]
    log(f"zero-shot {100 * zero['top1_mean_over_folds']:.1f}% over {len(bundle_things(world))} classes; "
        f"audio->image R@1 {100 * _at(retrieval['audio_to_image'], 1):.1f}%")
    chance = 100 / len(bundle_things(world))
    lines = ["# clipdense demo audio", "",
             f"The shipped audio tower ({head.config.frontend} front end, trained in AudioCLIP's partial regime beside "
             "`tiny-vit-t8` / `synthworld`, whose image and text towers it never changed) on a world of seed "
             f"{WORLD['seed']} it never heard.", "",
             "## Zero-shot sound classification (ESC-50 layout, 5 folds, text prompts)", "",
             f"| clips | classes | top-1, mean of folds | per fold | chance |", "|---|---|---|---|---|",
             f"| {zero['clips']} | {len(bundle_things(world))} | {100 * zero['top1_mean_over_folds']:.1f}% | "
             + ", ".join(f"{100 * v:.0f}" for v in zero["per_fold"].values()) + f" | {chance:.1f}% |", "",
             f"## Retrieval among {retrieval['pairs']} val scenes (R@1 / R@5 / R@10)", "",
             "| direction | R@1 | R@5 | R@10 |", "|---|---|---|---|"]
    for direction in ("audio_to_image", "image_to_audio", "audio_to_text", "text_to_audio"):
        r = retrieval[direction]
        lines.append(f"| {direction.replace('_', ' ')} | " + " | ".join(f"{100 * _at(r, k):.0f}%" for k in (1, 5, 10))
                     + " |")
    lines += ["", f"## Four val scenes: what their sound matched", ""] + _matches(bundle, world, out)
    lines += ["", f"Made in {time.perf_counter() - start:.0f} s on CPU."]
    report = out / "report.md"
    atomic_write_bytes(report, ("\n".join(lines) + "\n").encode())
    return report
