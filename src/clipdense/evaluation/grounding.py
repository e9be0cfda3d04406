"""Phrase grounding in the Flickr30k Entities protocol: Recall@1/5/10 at IoU >= 0.5, ANY-box and MERGED-box.

Each phrase of each (image, sentence) with at least one box counts once. Its predicted boxes are ranked by score;
it is recalled at k when one of the first k boxes has IoU >= 0.5 with

- ANY-box: any of the phrase's ground-truth boxes (MDETR's "any-box" protocol);
- MERGED-box: the union box enclosing all of them (the protocol of Plummer et al. / BAN, MDETR's "merged-box").

A phrase without predictions is a miss at every k. Recall is in percent.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torchvision.transforms.functional as TF
from torchvision.ops import box_iou

from ..errors import ConfigError
from .common import chunks, progress
from .context import EvalContext
from .inputs import load_or_skip
from .registry import NoOptions, register_task

KS = (1, 5, 10)
IOU = 0.5


def merged_box(boxes: torch.Tensor) -> torch.Tensor:
    """(1, 4) the smallest box enclosing all of (G, 4)."""
    return torch.cat([boxes[:, :2].min(0).values, boxes[:, 2:].max(0).values])[None]


def first_hit(ranked: torch.Tensor, truth: torch.Tensor, merged: bool, iou: float = IOU) -> int | None:
    """The 1-based rank of the first predicted box matching the phrase's truth (None: no match at any rank)."""
    if len(ranked) == 0 or len(truth) == 0:
        return None
    target = merged_box(truth) if merged else truth
    hits = (box_iou(ranked.float(), target.float()) >= iou).any(dim=1).nonzero()
    return int(hits[0]) + 1 if len(hits) else None


def phrase_recall(ranked: Sequence[torch.Tensor], truths: Sequence[torch.Tensor], ks: Sequence[int] = KS,
                  iou: float = IOU) -> dict[str, dict[str, float]]:
    """{"any": {"R@1": %, ...}, "merged": {...}} over phrases (``ranked[i]``: (K, 4) best first, ``truths[i]``:
    (G, 4) the phrase's boxes)."""
    out: dict[str, dict[str, float]] = {}
    for name, merged in (("any", False), ("merged", True)):
        ranks = [first_hit(r, t, merged, iou) for r, t in zip(ranked, truths)]
        out[name] = {f"R@{k}": round(100 * sum(r is not None and r <= k for r in ranks) / max(len(ranks), 1), 2)
                     for k in ks}
    return out


def evaluate_grounding(head: Any, reader: Any, batch_size: int = 8, skips: Any = None,
                       show_progress: bool = False) -> dict[str, Any]:
    """R@1/5/10 (ANY-box and MERGED-box) of a GLIP head on a reader of grounding data (boxes + phrases)."""
    from ..tasks.ground import ground_spans
    device = head.log_scale.device
    ranked: list[torch.Tensor] = []
    truths: list[torch.Tensor] = []
    images = 0
    for chunk in progress(list(chunks(list(range(len(reader))), batch_size)), "grounding", enabled=show_progress):
        samples = [s for s in (load_or_skip(skips, lambda i=i: reader[i]) if skips is not None else reader[i]
                               for i in chunk) if s is not None and len(s.phrases)]
        if not samples:
            continue
        found = ground_spans(head, [TF.to_tensor(s.image).to(device) for s in samples],
                             [s.phrases.text for s in samples], [s.phrases.spans for s in samples])
        for sample, det in zip(samples, found):
            images += 1
            for index in range(len(sample.phrases)):
                truth = sample.phrases.boxes_of(sample.boxes, index)
                if len(truth) == 0:
                    continue
                mine = det["labels"] == index
                order = det["scores"][mine].argsort(descending=True)
                ranked.append(det["boxes"][mine][order].cpu())
                truths.append(truth)
    return {**phrase_recall(ranked, truths), "num_phrases": len(truths), "num_images": images,
            "iou": IOU, "head": head.kind}


def grounding_report(result: dict[str, Any]) -> list[str]:
    """The Markdown section of ``clipdense eval --tasks grounding``."""
    rows = [f"| {name} | " + " | ".join(f"{result[name][f'R@{k}']:.1f}" for k in KS) + " |"
            for name in ("any", "merged")]
    return ["| boxes | R@1 | R@5 | R@10 |", "|---|---|---|---|", *rows, "",
            f"{result['num_phrases']} phrases in {result['num_images']} image-sentence pairs, IoU >= {result['iou']}."]


@register_task("grounding", needs={"boxes", "phrases", "image"}, summary="phrase grounding R@1/5/10, ANY- and "
               "MERGED-box (Flickr30k Entities protocol) of a GLIP head (--head)", report=grounding_report,
               needs_head=True, head_role="grounder")
def grounding_task(ctx: EvalContext, reader: Any, options: NoOptions) -> tuple[dict, int]:
    """The registered task: the context's GLIP head on the reader's (image, sentence) pairs."""
    from ..tasks.ground import as_grounder
    if ctx.head is None:
        raise ConfigError("--tasks grounding needs --head HEAD (a GLIP head from `clipdense train --objective glip`)")
    head = as_grounder(ctx.head, ctx.bundle).to(ctx.device)
    result = evaluate_grounding(head, reader, ctx.settings.batch_size, ctx.data.skips, ctx.settings.show_progress)
    return result, result["num_images"]
