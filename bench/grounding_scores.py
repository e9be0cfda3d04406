"""How much a GLIP head's class scores depend on the words (issue 26): on val scenes of a world, every class of the
world as GLIP prompts (``GLIPHead.detect``: chunked, merged), and per image each class's best score over all boxes.
Prints the mean best score of the classes present and of those absent, and how often the best-scoring class is
present (chance: present / all classes). Flat scores with a high present-rate at top-1 would mean the words decide;
flat scores with a low one mean the head scores objectness.

    python bench/grounding_scores.py --world runs/grounding/bench/world --head runs/grounding/bench/glip-detection
"""
from __future__ import annotations

import argparse
import sys

import torch
import torchvision.transforms.functional as TF


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", required=True)
    parser.add_argument("--head", required=True)
    parser.add_argument("--images", type=int, default=50, help="val scenes scored (default 50)")
    args = parser.parse_args()

    import clipdense as cd
    from clipdense.data.readers import open_data
    from clipdense.tasks.ground import glip_detect

    bundle = cd.load_model("tiny-vit-t8", pretrained="synthworld", device="cpu")
    head = cd.load_head(args.head, bundle)
    reader, _, info = open_data(args.world, {"boxes", "labels"}, split="val")
    names = [c for c, thing in zip(info.classes, info.thing_flags()) if thing]
    index = {c: i for i, c in enumerate(names)}
    present_scores, absent_scores, top_present, chance, used = [], [], 0, 0.0, 0
    for i in range(min(args.images, len(reader))):
        sample = reader[i]
        present = {index[info.classes[int(c)]] for c in sample.labels if info.classes[int(c)] in index}
        if not present:
            continue
        found = glip_detect(head, [TF.to_tensor(sample.image)], names)[0]
        best = torch.zeros(len(names))
        for label, score in zip(found.labels.tolist(), found.scores.tolist()):
            best[label] = max(float(best[label]), score)
        mask = torch.zeros(len(names), dtype=torch.bool)
        mask[list(present)] = True
        present_scores.append(float(best[mask].mean()))
        absent_scores.append(float(best[~mask].mean()))
        top_present += int(bool(mask[int(best.argmax())]))
        chance += len(present) / len(names)
        used += 1
    print(f"{args.head}: {used} val scenes with things, {len(names)} thing classes as prompts")
    print(f"mean best score: present classes {sum(present_scores) / used:.3f}, absent {sum(absent_scores) / used:.3f}")
    print(f"best-scoring class present: {100 * top_present / used:.1f} % (chance {100 * chance / used:.1f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
