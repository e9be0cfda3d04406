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
    print(json.dumps(record["scores"], indent=1))


if __name__ == "__main__":
    main()
