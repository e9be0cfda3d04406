"""Zero-shot classification (CLIP's protocol): cosine of image embeddings with a prompt-ensemble classifier."""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

import torch
from torch import Tensor

from ..data.readers import IMAGE
from ..data.sample import Sample
from ..errors import ConfigError
from . import metrics
from .common import ImageEncoder, normalize, progress
from .inputs import sample_batches
from .context import EvalContext
from .registry import NO_HEAD, NoOptions, register_task

if TYPE_CHECKING:
    from ..data import ImageFolderDataset


def zeroshot_classification(encode_image: ImageEncoder, classifier: Tensor,
                            batches: Iterable[tuple[Tensor, Tensor]],
                            groups: Mapping[str, Sequence[int]] | None = None,
                            ks: Sequence[int] = (1, 5), total: int | None = None,
                            show_progress: bool = False) -> dict:
    """Top-k accuracy of argmax over ``classifier`` (C, D) rows, plus per-class mean top-1.

    Args:
        encode_image: (B, 3, S, S) -> (B, D) image embeddings (normalised here).
        classifier: (C, D) class embeddings, one row per class (e.g. a prompt ensemble).
        batches: (images, labels) pairs; labels index the classifier rows.
        groups: named subsets of classes (e.g. base / novel). Each group is scored on its own samples
            with the classifier over *all* classes (the generalised open-vocabulary setting).
        total: number of batches, only for the progress bar.
    """
    weights = normalize(classifier)
    logits, labels = [], []
    with torch.no_grad():
        for images, target in progress(batches, "zeroshot", total, show_progress):
            feats = normalize(encode_image(images)).cpu()
            logits.append(feats @ weights.t().cpu())
            labels.append(target.cpu().long())
    if not logits:
        raise ConfigError("zero-shot classification: the image set is empty (expected at least one image)")
    logits_t, labels_t = torch.cat(logits), torch.cat(labels)
    if labels_t.max() >= weights.shape[0] or labels_t.min() < 0:
        raise ConfigError(f"zero-shot classification: labels must lie in [0, {weights.shape[0]}), "
                          f"got [{labels_t.min()}, {labels_t.max()}]")
    result = _scores(logits_t, labels_t, ks)
    num_classes = weights.shape[0]
    result.update(num_samples=len(labels_t), num_classes=num_classes,
                  chance={f"top{k}": min(k, num_classes) / num_classes for k in ks})
    for name, members in (groups or {}).items():
        keep = torch.isin(labels_t, torch.as_tensor(list(members), dtype=torch.long))
        result[name] = dict(_scores(logits_t[keep], labels_t[keep], ks), num_samples=int(keep.sum()))
    return result


def _scores(logits: Tensor, labels: Tensor, ks: Sequence[int]) -> dict:
    """top-k accuracies and the per-class mean top-1 of one set of samples."""
    out: dict = {f"top{k}": acc for k, acc in metrics.topk_accuracy(logits, labels, ks).items()}
    out["mean_per_class_top1"] = metrics.per_class_mean_accuracy(metrics.topk_correct(logits, labels, 1), labels) \
        if labels.numel() else float("nan")
    return out


@register_task("zeroshot", needs={IMAGE, "image_label"}, summary="top-1 / top-5 on labelled images (ImageFolder)",
               head_role=NO_HEAD)
def run_zeroshot(ctx: EvalContext, reader: ImageFolderDataset, options: NoOptions) -> tuple[dict, int]:
    """Every image of the reader against a classifier over its class names, at the model's own preprocessing."""
    def collate(samples: list[Sample]) -> list[tuple[Tensor, Tensor]]:
        return [(torch.stack([ctx.preprocess(s.image) for s in samples]),
                 torch.tensor([s.image_label for s in samples]))]
    names = list(reader.classes)
    batches = sample_batches(reader, ctx.settings.batch_size, ctx.data.skips, collate)
    result = zeroshot_classification(ctx.encode_image, ctx.classifier(names), batches,
                                     groups=ctx.data.group_indices(names), total=len(batches),
                                     show_progress=ctx.settings.show_progress)
    return result, result["num_samples"]
