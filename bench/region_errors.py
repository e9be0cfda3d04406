"""What region embeddings get wrong about things: the colour, the shape, or both (issue 19's "why").

On the synthetic world a thing class is "<colour> <shape>" (plus a few composites), so a wrong answer that keeps
the colour missed the shape, and the reverse. For each model and each of ``rois`` (RoIAlign of the maskclip map,
what CLIPSelf trains) and ``crops`` (the image embedding of the expanded crop, what CLIPSelf distils), over the
world's thing regions: top-1 (per region), colour right, shape right, and the most frequent confusions.

    python bench/region_errors.py --data runs/abl19/evalworld --image-size 128 --crops stretch \\
        --model tiny-vit-t8@synthworld --model runs/demo/clipself-boxes-guard
"""
from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from clipdense.evaluation.common import normalize  # noqa: E402
from clipdense.evaluation.context import EvalContext, EvalSettings  # noqa: E402
from clipdense.evaluation.inputs import open_eval_data  # noqa: E402
from clipdense.evaluation.registry import EVAL_TASKS  # noqa: E402
from clipdense.evaluation.region_methods import REGION_METHODS, RegionEncoders  # noqa: E402
from clipdense.evaluation.regions import region_batches  # noqa: E402
from clipdense.models import load_model  # noqa: E402


def predictions(spec: str, data: str, image_size: int, crops: str, mode: str) -> tuple[list[str], dict]:
    """(class names, {method: (targets, predictions)}) over the thing regions of ``data``'s val split."""
    model, _, pretrained = spec.partition("@")
    bundle = load_model(model, pretrained or None, device="cpu")
    bundle.model.eval()
    settings = EvalSettings(batch_size=64, templates="world", dense_mode=(mode,), image_size=image_size)
    ctx = EvalContext(bundle, torch.device("cpu"), settings, open_eval_data(data, "val"))
    keep_aspect = crops == "letterbox"
    encoders = RegionEncoders(encode_image=ctx.encode_image, input_size=ctx.input_size,
                              crop=lambda images, boxes: ctx.crop(images, boxes, keep_aspect),
                              pool_boxes=ctx.pool_boxes, pool_masks=ctx.pool_masks, batch_size=64)
    reader = ctx.data.open(EVAL_TASKS["regions"])
    classes, isthing = list(reader.classes), reader.isthing
    weights = normalize(ctx.classifier(classes)).cpu()
    out: dict[str, tuple[list[torch.Tensor], list[torch.Tensor]]] = {"rois": ([], []), "crops": ([], [])}
    with torch.no_grad():
        for batch in region_batches(reader, ctx.to_tensor, image_size, 64, ctx.data.skips):
            labels = torch.cat(batch.labels).long()
            dense = ctx.dense(mode)(batch.images)
            for method in out:
                emb = REGION_METHODS[method].embed(batch, dense, encoders, isthing)
                keep = isthing[labels]
                out[method][0].append(labels[keep])
                out[method][1].append((normalize(emb).cpu() @ weights.t()).argmax(1)[keep])
    return classes, {m: (torch.cat(t), torch.cat(p)) for m, (t, p) in out.items()}


def error_split(classes: list[str], targets: torch.Tensor, preds: torch.Tensor, top: int = 5) -> dict:
    """Top-1, colour right and shape right (two-word classes), and the ``top`` most frequent confusions."""
    words = [name.split() for name in classes]
    pairs = [(words[t], words[p]) for t, p in zip(targets.tolist(), preds.tolist()) if len(words[t]) == 2]
    confusions = collections.Counter((classes[t], classes[p]) for t, p in zip(targets.tolist(), preds.tolist())
                                     if t != p)
    share = (lambda hits: round(100 * sum(hits) / max(len(hits), 1), 1))
    return {"regions": len(targets), "top1": share((targets == preds).tolist()),
            "colour right": share([len(p) == 2 and p[0] == t[0] for t, p in pairs]),
            "shape right": share([len(p) == 2 and p[1] == t[1] for t, p in pairs]),
            "colour right, shape wrong": share([len(p) == 2 and p[0] == t[0] and p[1] != t[1] for t, p in pairs]),
            "colour wrong, shape right": share([len(p) == 2 and p[0] != t[0] and p[1] == t[1] for t, p in pairs]),
            "confusions": [f"{t} -> {p} ({n})" for (t, p), n in confusions.most_common(top)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a world (its val split is read)")
    parser.add_argument("--model", action="append", required=True,
                        help="a run folder, a weights file, or ARCH@PRETRAINED (repeatable)")
    parser.add_argument("--image-size", type=int, default=128, help="short side the dense map is read at")
    parser.add_argument("--crops", choices=("letterbox", "stretch"), default="letterbox")
    parser.add_argument("--dense-mode", default="maskclip")
    parser.add_argument("--out", help="JSON file for the results")
    args = parser.parse_args()
    results = {}
    print("| model | method | thing regions | top-1 | colour right | shape right | colour right, shape wrong | "
          "colour wrong, shape right |\n|---|---|---|---|---|---|---|---|")
    for spec in args.model:
        classes, per_method = predictions(spec, args.data, args.image_size, args.crops, args.dense_mode)
        results[spec] = {m: error_split(classes, t, p) for m, (t, p) in per_method.items()}
        for method, r in results[spec].items():
            print(f"| {spec} | {method} | {r['regions']} | {r['top1']} | {r['colour right']} | {r['shape right']} | "
                  f"{r['colour right, shape wrong']} | {r['colour wrong, shape right']} |")
    for spec, per_method in results.items():
        for method, r in per_method.items():
            print(f"\n{spec} {method}: most frequent confusions: " + "; ".join(r["confusions"]))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
