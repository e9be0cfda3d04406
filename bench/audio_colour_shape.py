"""Which attribute does the shipped audio tower hear: colour (pitch) or shape (timbre)? (issue 29)

Zero-shot predictions on the shipped tower's card world (seed 1, 68 classes x 5 single-object sounds), split into
"colour right" and "shape right" over the "<colour> <shape>" classes (composites left out). For docs/results/audio.md.

    OMP_NUM_THREADS=1 python bench/audio_colour_shape.py --out /tmp/card-world
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

import clipdense as cd
from clipdense.data.formats.audio import open_esc50
from clipdense.evaluation.audio import embed_sounds
from clipdense.models import text_classifier
from clipdense.tasks.audio import audio_tower

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from ship_audio_tower import card_world  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="a new folder for the card world")
    args = parser.parse_args()
    torch.set_num_threads(1)
    world = card_world(args.out)
    bundle = cd.load_model("tiny-vit-t8", pretrained="synthworld", device="cpu")
    clips = open_esc50(world / "audio" / "esc50")
    samples = [clips[i] for i in range(len(clips))]
    emb = embed_sounds(audio_tower(bundle), [s.audio for s in samples], torch.device("cpu"))
    pred = (emb @ text_classifier(bundle, clips.classes, "world").T).argmax(1).tolist()
    pairs = [(clips.classes[p].split(" "), clips.classes[s.image_label].split(" ")) for p, s in zip(pred, samples)]
    combos = [(p, t) for p, t in pairs if len(t) == 2]
    top1 = sum(p == t for p, t in pairs) / len(pairs)
    colour = sum(len(p) == 2 and p[0] == t[0] for p, t in combos) / len(combos)
    shape = sum(p[-1] == t[1] for p, t in combos) / len(combos)
    print("| clips | top-1 | colour right (pitch) | shape right (timbre) |\n|---|---|---|---|")
    print(f"| {len(pairs)} ({len(combos)} colour-shape) | {100 * top1:.1f} | {100 * colour:.1f} | {100 * shape:.1f} |")


if __name__ == "__main__":
    main()
