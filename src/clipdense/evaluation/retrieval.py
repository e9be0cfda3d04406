"""Image-text retrieval (the CLIP / open_clip protocol): recall@k in both directions."""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Iterator, Sequence

import torch
from torch import Tensor

from ..data.images import open_image
from ..errors import ConfigError
from . import metrics
from .common import ImageEncoder, TextEncoder, encode_in_batches, normalize, progress
from .inputs import Batches, load_or_skip
from .context import EvalContext
from .registry import NO_HEAD, NoOptions, register_task

if TYPE_CHECKING:
    from ..data import ImageTextDataset

CaptionBatch = tuple[Tensor, list[list[str]]]   # (images, every caption of each image)


def retrieval(encode_image: ImageEncoder, encode_text: TextEncoder,
              batches: Iterable[tuple[Tensor, Sequence[Sequence[str]]]], ks: Sequence[int] = (1, 5, 10),
              text_batch_size: int = 256, total: int | None = None, show_progress: bool = False) -> dict:
    """Recall@k image->text and text->image over the whole set, with the chance level of each.

    Args:
        encode_image / encode_text: the model's two towers (outputs normalised here).
        batches: (images (B, 3, S, S), captions) where ``captions[i]`` lists every caption of image i;
            an image->text hit is any of its captions in the top k.
    """
    image_feats: list[Tensor] = []
    texts: list[str] = []
    owner: list[int] = []
    num_images = 0
    with torch.no_grad():
        for images, captions in progress(batches, "retrieval", total, show_progress):
            if len(captions) != len(images):
                raise ConfigError(f"retrieval: {len(images)} images but {len(captions)} caption lists in a batch")
            for offset, caption_list in enumerate(captions):
                texts.extend(caption_list)
                owner.extend([num_images + offset] * len(caption_list))
            num_images += len(images)
            image_feats.append(normalize(encode_image(images)).cpu())
    if not texts:
        raise ConfigError("retrieval: no captions found (expected at least one image with a caption)")
    text_feats = normalize(encode_in_batches(encode_text, texts, text_batch_size))
    similarity = torch.cat(image_feats) @ text_feats.t()
    text_to_image = torch.as_tensor(owner, dtype=torch.long)
    recall = metrics.recall_at_k(similarity, text_to_image, ks)
    per_image = torch.bincount(text_to_image, minlength=num_images).tolist()
    with_text = [m for m in per_image if m > 0]
    chance_i2t = {k: sum(metrics.chance_recall_at_k(len(texts), m, k) for m in with_text) / len(with_text)
                  for k in ks}
    chance_t2i = {k: metrics.chance_recall_at_k(num_images, 1, k) for k in ks}
    return {
        "image_to_text": {f"R@{k}": v for k, v in recall["image_to_text"].items()},
        "text_to_image": {f"R@{k}": v for k, v in recall["text_to_image"].items()},
        "chance": {"image_to_text": {f"R@{k}": v for k, v in chance_i2t.items()},
                   "text_to_image": {f"R@{k}": v for k, v in chance_t2i.items()}},
        "num_images": num_images,
        "num_texts": len(texts),
    }


@register_task("retrieval", needs={"caption"}, summary="image<->text recall@1/5/10 (open_clip CSV, shards)",
               head_role=NO_HEAD)
def run_retrieval(ctx: EvalContext, reader: ImageTextDataset, options: NoOptions) -> tuple[dict, int]:
    """Recall@k over the reader's pairs at the model's own preprocessing; a CSV's rows are grouped by image."""
    batches = _csv_batches(ctx, reader) if reader.format == "csv" else _stream_batches(ctx, reader)
    result = retrieval(ctx.encode_image, ctx.encode_text, batches, total=len(batches) if reader.format == "csv"
                       else None, show_progress=ctx.settings.show_progress)
    return result, result["num_images"]


def _csv_batches(ctx: EvalContext, reader: ImageTextDataset) -> Batches:
    """An image listed on several rows is one image with several captions (the COCO / Flickr protocol)."""
    captions: dict[str, list[str]] = {}
    for image, caption in reader.rows:
        captions.setdefault(image, []).append(caption)

    def make(chunk: Sequence[tuple[str, list[str]]]) -> Iterable[CaptionBatch]:
        pairs = [(im, caps) for im, caps in
                 ((load_or_skip(ctx.data.skips, lambda p=p: open_image(p)), c) for p, c in chunk) if im is not None]
        if pairs:
            yield torch.stack([ctx.preprocess(im) for im, _ in pairs]), [caps for _, caps in pairs]
    return Batches(list(captions.items()), ctx.settings.batch_size, make)


def _stream_batches(ctx: EvalContext, reader: ImageTextDataset) -> Iterator[CaptionBatch]:
    """WebDataset shards: one caption per sample, in file order (the reader counts unreadable ones)."""
    batch: list[tuple[Tensor, str]] = []
    for item in reader:
        batch.append((ctx.preprocess(item["image"]), item["caption"]))
        if len(batch) == ctx.settings.batch_size:
            yield torch.stack([im for im, _ in batch]), [[c] for _, c in batch]
            batch = []
    if batch:
        yield torch.stack([im for im, _ in batch]), [[c] for _, c in batch]
