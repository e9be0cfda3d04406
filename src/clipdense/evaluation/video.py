"""Video tasks: text<->video retrieval in MSR-VTT's 1k-A protocol and action recognition (ActionCLIP's protocol).

``video-retrieval``: every test sentence against every test clip; R@1/5/10 (percent of queries whose clip is in the
top k), MdR and MnR (median and mean 1-based rank of the right clip) in both directions, as CLIP4Clip reports them.
``action``: top-1 / top-5 over the data's classes, prompts averaged over a template set (ActionCLIP's 16), and the
zero-shot numbers on the held-out classes (the world's ``video.json``, or ``--task-arg action.novel=a+b``): top-1
over all classes and among the held-out classes only, beside chance (1 / their count).

The head is ``--head`` when it is a ``video/temporal`` file (its pooling and tuned CLIP); without one a clip is
the meanP of its frames.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import DataError, ImageLoadError
from ..heads import load_head, read_head_info
from ..heads.video import KIND as VIDEO_KIND, VideoHead, text_tokens
from ..models.text import text_classifier
from ..objectives.actionclip import TEMPLATE_SETS
from ..tasks.video import encode_videos
from .context import EvalContext
from .options import option
from .registry import register_task


def rank_metrics(similarity: Tensor) -> dict[str, float]:
    """R@1/5/10 (percent), MdR, MnR of square (queries, items) scores whose right item is the diagonal."""
    order = similarity.argsort(dim=1, descending=True)
    truth = torch.arange(similarity.shape[0])[:, None]
    ranks = (order == truth).float().argmax(dim=1) + 1   # 1-based rank of the right item
    out = {f"R@{k}": 100.0 * float((ranks <= k).float().mean()) for k in (1, 5, 10)}
    return {**out, "MdR": float(ranks.float().median()), "MnR": float(ranks.float().mean())}


def video_head(ctx: EvalContext) -> VideoHead | None:
    """``--head`` when it is a video head (another kind serves other tasks of the run), else None (meanP)."""
    if ctx.head and read_head_info(ctx.head).kind == VIDEO_KIND:
        return load_head(ctx.head, ctx.bundle).to(ctx.device).eval()
    return None


def _readable(reader: Any) -> list[tuple[int, Any]]:
    """(index, sample) of every clip that decodes; the others are skipped, named and counted by the reader."""
    kept = []
    for index in range(len(reader)):
        try:
            kept.append((index, reader[index]))
        except ImageLoadError as exc:
            reader.skips.add(exc)
    if not kept:
        raise DataError(f"no readable video among {len(reader)} ({reader.skips.summary()})")
    return kept


@dataclass(frozen=True)
class VideoRetrievalOptions:
    """Options of video-retrieval (the 1k-A protocol has one sentence per clip)."""

    batch_text: int = option(256, "sentences per text-tower forward", low=1)
    twins: bool = option(False, "the test list holds order-swapped twins (clips 2i and 2i+1, the world's "
                                "order_test.csv): also score each caption's clip against its twin alone")


def twin_accuracy(similarity: Tensor, indices: list[int]) -> dict[str, float]:
    """Percent of captions (t->v) / clips (v->t) that score their own pair above the order-swapped twin's, over the
    twins (reader indices 2i, 2i+1) both of which decoded; 50 is what an order-blind model scores on exact twins."""
    where = {index: row for row, index in enumerate(indices)}
    pairs = [(where[i], where[i + 1]) for i in indices if i % 2 == 0 and i + 1 in where]
    if not pairs:
        raise DataError("twins: no complete pair of order-swapped clips (expected clips 2i and 2i+1)")
    rows = torch.tensor([a for a, b in pairs] + [b for a, b in pairs])
    twins = torch.tensor([b for a, b in pairs] + [a for a, b in pairs])
    own = similarity[rows, rows]
    return {"text_to_video": 100.0 * float((own > similarity[rows, twins]).float().mean()),
            "video_to_text": 100.0 * float((own > similarity[twins, rows]).float().mean()), "pairs": len(pairs)}


@torch.no_grad()
def _similarity(ctx: EvalContext, head: VideoHead | None, samples: list, batch_text: int) -> Tensor:
    """(texts, videos) scores: cosines, or the tight head's pair logits."""
    model = head.clip_model(ctx.bundle) if head is not None else ctx.bundle.model
    tokens = ctx.bundle.tokenizer([s.caption for s in samples]).to(ctx.device)
    frames = [s.frames for s in samples]
    if head is not None and head.tight:
        from ..objectives.video_common import center_view, encode_frames
        from ..objectives.views import model_image_stats
        size, mean, std = model_image_stats(model)
        video = torch.stack([center_view(f, size, mean, std) for f in frames]).to(ctx.device)
        text, pad = text_tokens(model, tokens)
        return head.pair_logits(text, pad, encode_frames(model, video)).float().cpu()
    videos = encode_videos(ctx.bundle, frames, head)
    text = torch.cat([F.normalize(model.encode_text(tokens[i:i + batch_text]).float(), dim=-1)
                      for i in range(0, len(tokens), batch_text)]).cpu()
    return text @ videos.T


@register_task("video-retrieval", needs={"caption", "frames"}, options=VideoRetrievalOptions, head_role="video",
               summary="text->video and video->text R@1/5/10, MdR, MnR (MSR-VTT 1k-A: one sentence per clip)")
def run_video_retrieval(ctx: EvalContext, reader: Any, options: VideoRetrievalOptions) -> tuple[dict, int]:
    kept = _readable(reader)
    samples = [s for _, s in kept]
    similarity = _similarity(ctx, video_head(ctx), samples, options.batch_text)
    out = {"text_to_video": rank_metrics(similarity), "video_to_text": rank_metrics(similarity.T),
           "clips": len(samples)}
    if options.twins:
        out["twin_accuracy"] = twin_accuracy(similarity, [i for i, _ in kept])
    return out, len(samples)


@dataclass(frozen=True)
class ActionOptions:
    """Options of action."""

    templates: str = option("actionclip", "prompt templates averaged per class", choices=tuple(TEMPLATE_SETS))
    novel: str = option("", "held-out classes joined by + (default: the world's video.json held_out)")


def _novel(reader: Any, options: ActionOptions) -> list[str]:
    if options.novel:
        return [c.strip().replace("_", " ") for c in options.novel.split("+") if c.strip()]
    meta = Path(getattr(reader, "clips")[0].path).parents[3] / "video.json" if reader.clips else None
    if meta is not None and meta.is_file():
        return list(json.loads(meta.read_text())["held_out"])
    return []


def topk_accuracy(logits: Tensor, labels: Tensor, k: int) -> float:
    """Percent of rows whose label is among the ``k`` highest scores."""
    top = logits.topk(min(k, logits.shape[1]), dim=1).indices
    return 100.0 * float((top == labels[:, None]).any(dim=1).float().mean())


@register_task("action", needs={"frames", "image_label"}, options=ActionOptions, head_role="video",
               summary="action top-1/top-5 with prompt ensembles; zero-shot on held-out classes (ActionCLIP)")
@torch.no_grad()
def run_action(ctx: EvalContext, reader: Any, options: ActionOptions) -> tuple[dict, int]:
    head = video_head(ctx)
    kept = _readable(reader)
    labels = torch.tensor([s.image_label for _, s in kept])
    model = head.clip_model(ctx.bundle) if head is not None else ctx.bundle.model
    side = ctx.bundle if model is ctx.bundle.model else dataclasses.replace(ctx.bundle, model=model)
    classes = list(reader.classes)
    classifier = text_classifier(side, classes, TEMPLATE_SETS[options.templates]).float().cpu()
    logits = encode_videos(ctx.bundle, [s.frames for _, s in kept], head) @ classifier.T
    out: dict[str, Any] = {"top1": topk_accuracy(logits, labels, 1), "top5": topk_accuracy(logits, labels, 5),
                           "classes": len(classes), "clips": len(kept)}
    novel = [classes.index(c) for c in _novel(reader, options) if c in classes]
    if novel:
        rows = torch.isin(labels, torch.tensor(novel))
        seen = ~rows
        among = logits[rows][:, novel]
        remap = torch.tensor([novel.index(int(x)) for x in labels[rows]])
        out["zero_shot"] = {"classes": len(novel), "clips": int(rows.sum()),
                            "top1_all_classes": topk_accuracy(logits[rows], labels[rows], 1),
                            "top1_among_novel": topk_accuracy(among, remap, 1), "chance": 100.0 / len(novel)}
        if seen.any():
            out["seen_top1"] = topk_accuracy(logits[seen], labels[seen], 1)
    return out, len(kept)
