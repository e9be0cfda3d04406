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


def best_scores(head: object, image: torch.Tensor, names: list[str], alone: bool) -> torch.Tensor:
    """(C,) each class's best box score: all names as chunked prompts, or each name as its own prompt."""
    from clipdense.tasks.ground import glip_detect

    best = torch.zeros(len(names))
    groups = [[i] for i in range(len(names))] if alone else [list(range(len(names)))]
    for group in groups:
        found = glip_detect(head, [image], [names[i] for i in group])[0]
        for label, score in zip(found.labels.tolist(), found.scores.tolist()):
            best[group[label]] = max(float(best[group[label]]), score)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", required=True)
    parser.add_argument("--head", required=True)
    parser.add_argument("--images", type=int, default=50, help="val scenes scored (default 50)")
    parser.add_argument("--alone", action="store_true",
                        help="each class in its own prompt ('red circle.'), so no name sees another in the causal "
                             "text tower (68 forwards per image)")
    args = parser.parse_args()

    import clipdense as cd
    from clipdense.data.readers import open_data
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
        best = best_scores(head, TF.to_tensor(sample.image), names, args.alone)
        mask = torch.zeros(len(names), dtype=torch.bool)
        mask[list(present)] = True
        present_scores.append(float(best[mask].mean()))
        absent_scores.append(float(best[~mask].mean()))
        top_present += int(bool(mask[int(best.argmax())]))
        chance += len(present) / len(names)
        used += 1
    how = "each in its own prompt" if args.alone else "as chunked prompts"
    print(f"{args.head}: {used} val scenes with things, {len(names)} thing classes {how}")
    print(f"mean best score: present classes {sum(present_scores) / used:.3f}, absent {sum(absent_scores) / used:.3f}")
    print(f"best-scoring class present: {100 * top_present / used:.1f} % (chance {100 * chance / used:.1f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
