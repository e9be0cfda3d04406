"""Ship an AudioCLIP audio tower (partial regime) beside the CLIP weights it was trained against.

    python scripts/ship_audio_tower.py --run runs/audioclip-synthworld

Writes src/clipdense/models/weights/audio/NAME--TAG.{safetensors,md,json}: the head file in fp16 (bound to the
shipped CLIP's fingerprint), a model card, and the SHA-256 + zero-shot accuracy on a freshly generated sounding world
(seed and sizes in the JSON), which tests/test_audio_shipped.py reproduces.
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

import clipdense as cd
from clipdense.data.world.scenes import SynthConfig
from clipdense.data.world.sound_writer import write_sounds
from clipdense.data.world.sounds import SoundConfig
from clipdense.data.world.writers import write_world
from clipdense.evaluation import evaluate
from clipdense.heads import load_head, read_head_info, save_head
from clipdense.tasks.audio import AUDIO_WEIGHTS_DIR

#: the card's world: another seed than training, so no sound was heard
CARD_WORLD = {"train": 0, "val": 100, "image_size": 64, "seed": 1, "classify_train_per_class": 0,
              "classify_val_per_class": 0}
CARD_SOUNDS = {"single_per_class": 5}


def card_world(folder: Path) -> Path:
    write_world(SynthConfig(out=str(folder), **CARD_WORLD))
    write_sounds(folder, SoundConfig(**CARD_SOUNDS))
    return folder


def card_eval(bundle, head_file: Path, world: Path) -> dict:
    zero = evaluate(bundle, f"esc50:root={world / 'audio' / 'esc50'}", tasks="audio-zeroshot", head=head_file,
                    templates="world", device="cpu")
    retrieval = evaluate(bundle, world, tasks="audio-retrieval", head=head_file, templates="world", device="cpu")
    return {"audio-zeroshot": zero["tasks"]["audio-zeroshot"], "audio-retrieval": retrieval["tasks"]["audio-retrieval"]}


def _at(recalls: dict, k: int) -> float:
    return float(recalls[k] if k in recalls else recalls[str(k)])


def card_text(args: argparse.Namespace, record: dict) -> str:
    """The model card: what it is, how it was made, what it scores (and what it is not)."""
    zero, ret = record["scores"]["audio-zeroshot"], record["scores"]["audio-retrieval"]
    tower = record["tower"]
    classes = len(zero["per_fold"]) and zero["clips"] // CARD_SOUNDS["single_per_class"]
    return f"""# Audio tower for `{args.model}` / `{args.pretrained}` (AudioCLIP, partial regime)

An `audio/audioclip` head (clipdense.heads.audio): an ESResNeXt-style ResNeXt ({tower['widths']} channels,
{tower['blocks']} blocks, cardinality {tower['cardinality']}) over the learnable **{tower['frontend'].upper()}** front end
({tower['bands']} bands, {tower['n_fft']}-sample frames, hop {tower['hop']}, {tower['sample_rate']} Hz, {tower['clip_seconds']} s
windows), projected to the CLIP's {tower['embed_dim']}-d joint space. Trained with `clipdense train --objective audioclip`
(three pairwise losses; only the audio tower trained, so the CLIP's image and text embeddings are unchanged) on the
sounding world of `clipdense data synth --audio` (default vocabulary, seed 0). Source run: `{args.run.name}`.
Stored in fp16 ({record['bytes'] / 1e6:.2f} MB), SHA-256 `{record['sha256']}`; bound to the CLIP's weights fingerprint:
loading it beside other weights is refused.

## Scores on a world it never heard (seed {CARD_WORLD['seed']})

| task | value |
|---|---|
| zero-shot sound classification, ESC-50 layout, {classes} classes x {CARD_SOUNDS['single_per_class']} clips, top-1 mean of 5 folds | {100 * zero['top1_mean_over_folds']:.1f} % (chance {100 / max(classes, 1):.1f} %) |
| audio -> image R@1 / R@5 / R@10 among {ret['pairs']} val scenes | {100 * _at(ret['audio_to_image'], 1):.1f} / {100 * _at(ret['audio_to_image'], 5):.1f} / {100 * _at(ret['audio_to_image'], 10):.1f} % |
| audio -> text R@1 / R@5 / R@10 | {100 * _at(ret['audio_to_text'], 1):.1f} / {100 * _at(ret['audio_to_text'], 5):.1f} / {100 * _at(ret['audio_to_text'], 10):.1f} % |

Reproduced by `tests/test_audio_shipped.py` (slow tier). It knows only the synthetic world's sounds (tones whose
pitch is the colour, timbre the shape, loudness the size): it is a working example and a test fixture, not a model
of real-world audio.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, type=Path)
    parser.add_argument("--model", default="tiny-vit-t8")
    parser.add_argument("--pretrained", default="synthworld")
    args = parser.parse_args()
    torch.set_num_threads(1)
    bundle = cd.load_model(args.model, pretrained=args.pretrained, device="cpu")
    head = load_head(args.run, bundle).half()
    AUDIO_WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
    target = AUDIO_WEIGHTS_DIR / f"{args.model}--{args.pretrained}.safetensors"
    save_head(head, target, bundle, {"clipdense.source_run": args.run.name})
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    with tempfile.TemporaryDirectory() as tmp:
        scores = card_eval(bundle, target, card_world(Path(tmp) / "world"))
    info = read_head_info(target)
    record = {"file": target.name, "sha256": digest, "bytes": target.stat().st_size, "kind": info.kind,
              "tower": info.config["tower"], "card_world": CARD_WORLD, "card_sounds": CARD_SOUNDS, "scores": scores,
              "made": time.strftime("%Y-%m-%d"), "machine": platform.machine()}
    target.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    target.with_suffix(".md").write_text(card_text(args, record))
    print(json.dumps(record["scores"], indent=1))


if __name__ == "__main__":
    main()
