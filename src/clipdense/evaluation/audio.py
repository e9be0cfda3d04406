"""Sound tasks: zero-shot classification on ESC-50 / UrbanSound8K folds, and sound <-> image / text retrieval.

The audio tower is ``--head`` (an ``audio/audioclip`` file or run) when given, else the one shipped for the model's
weights (``tasks.audio.audio_tower``). Zero-shot needs no training, so "5-fold" means what ESC-50 papers report:
accuracy on each fold's clips and the mean over folds (AudioCLIP's 69.40 % on ESC-50 is that mean).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.audio import Waveform
from ..errors import DataError
from ..heads.adapters.linear_probe import DEFAULT_WEIGHT_DECAY, WEIGHT_DECAYS, fit_logistic
from ..models.text import text_classifier
from ..heads import read_head_info
from ..heads.audio import KIND as AUDIO_KIND
from ..tasks.audio import audio_tower, prepare_waveform, use_audio_tower
from .context import EvalContext
from .metrics import recall_at_k
from .options import option
from .registry import register_task


def _head(ctx: EvalContext) -> Any:
    """``--head`` when it is an audio tower (another kind of head serves the other tasks of the run), else the tower
    shipped for the model's weights."""
    if ctx.head and read_head_info(ctx.head).kind == AUDIO_KIND:
        return use_audio_tower(ctx.bundle, ctx.head)
    return audio_tower(ctx.bundle)


@torch.no_grad()
def embed_sounds(head: Any, sounds: Sequence[Waveform], device: torch.device, batch_size: int = 32) -> Tensor:
    """(N, D) unit-norm embeddings: each sound's windows (``prepare_waveform``) averaged."""
    rows = []
    for start in range(0, len(sounds), batch_size):
        chunk = [prepare_waveform(head, s, "sound", say=None) for s in sounds[start:start + batch_size]]
        counts = [len(c) for c in chunk]
        features = head.encode_audio(torch.cat(chunk).to(device)).float()
        rows += [F.normalize(f.mean(dim=0), dim=-1) for f in torch.split(features, counts)]
    return torch.stack(rows).cpu()


def fold_accuracy(logits: Tensor, labels: Tensor, folds: Tensor) -> dict[str, Any]:
    """Top-1 accuracy per fold and their mean (the ESC-50 protocol's number)."""
    correct = (logits.argmax(dim=1) == labels).float()
    per_fold = {int(f): float(correct[folds == f].mean()) for f in folds.unique()}
    return {"top1_mean_over_folds": sum(per_fold.values()) / len(per_fold), "per_fold": per_fold,
            "top1_all": float(correct.mean()), "clips": int(len(labels))}


@dataclass(frozen=True)
class AudioZeroShotOptions:
    """Options of audio-zeroshot."""

    batch_size: int = option(32, "sounds per forward", low=1)


def _read_clips(reader: Any) -> tuple[list, list, torch.Tensor]:
    """(sounds, class labels, folds as the reader lists them) of every readable clip."""
    sounds, labels = [], []
    for sample in reader:
        sounds.append(sample.audio)
        labels.append(sample.image_label)
    return sounds, labels, torch.tensor(getattr(reader, "folds", [1] * len(labels)))


@register_task("audio-zeroshot", head_role="audio", needs={"audio", "image_label"}, options=AudioZeroShotOptions,
               summary="zero-shot sound classification with text prompts, per fold and mean (ESC-50, UrbanSound8K)")
def run_audio_zeroshot(ctx: EvalContext, reader: Any, options: AudioZeroShotOptions) -> tuple[dict, int]:
    head = _head(ctx)
    sounds, labels, folds = _read_clips(reader)
    if len(folds) != len(labels):   # corrupt clips were skipped: fold by the clips read
        folds = torch.ones(len(labels), dtype=torch.long)
    audio = embed_sounds(head, sounds, ctx.device, options.batch_size)
    classifier = (ctx.classifier(list(reader.classes)) if head.clip is None else   # full regime: its own CLIP's text
                  text_classifier(dataclasses.replace(ctx.bundle, model=head.clip), list(reader.classes),
                                  ctx.settings.templates)).float().cpu()
    logits = head.scales()[1].detach().float().cpu() * audio @ classifier.T
    return fold_accuracy(logits, torch.tensor(labels), folds), len(labels)


def fold_linear_probe(features: Tensor, labels: Tensor, folds: Tensor, num_classes: int,
                      weight_decay: float | None = None) -> dict[str, Any]:
    """ESC-50's supervised protocol on frozen embeddings: for each fold, a logistic-regression probe (CLIP's linear
    probe, ``fit_logistic``) trained on the other folds predicts that fold; accuracy per fold and the mean.

    ``weight_decay`` None: chosen per test fold among ``WEIGHT_DECAYS`` by accuracy on one training fold held out
    (the next fold number), then refitted on all the training folds, so the test fold never picks it.
    """
    logits = torch.zeros(len(labels), num_classes)
    chosen: dict[int, float] = {}
    names = sorted(int(f) for f in folds.unique())
    if len(names) < 2:
        raise DataError("audio-linear-probe: needs at least 2 folds (train on the others, test on each)")
    for fold in names:
        train, test = folds != fold, folds == fold
        decay = weight_decay if weight_decay is not None else _pick_decay(features[train], labels[train],
                                                                          folds[train], num_classes)
        weight, bias = fit_logistic(features[train], labels[train], num_classes, decay)
        logits[test] = features[test] @ weight.T + bias
        chosen[fold] = decay
    return {**fold_accuracy(logits, labels, folds), "weight_decay": chosen}


def _pick_decay(features: Tensor, labels: Tensor, folds: Tensor, num_classes: int) -> float:
    """The L2 strength with the best accuracy on the first training fold when fitted on the rest."""
    held = folds == folds.min()
    if held.all():
        return DEFAULT_WEIGHT_DECAY
    scores = []
    for decay in WEIGHT_DECAYS:
        weight, bias = fit_logistic(features[~held], labels[~held], num_classes, decay)
        scores.append(float(((features[held] @ weight.T + bias).argmax(dim=1) == labels[held]).float().mean()))
    return WEIGHT_DECAYS[max(range(len(scores)), key=lambda i: (scores[i], i))]   # ties: the stronger decay


@dataclass(frozen=True)
class AudioProbeOptions:
    """Options of audio-linear-probe."""

    batch_size: int = option(32, "sounds per forward", low=1)
    weight_decay: float | None = option(None, "L2 strength of the probe (none: chosen per test fold on a held-out "
                                              "training fold)", low=0.0)


@register_task("audio-linear-probe", head_role="audio", needs={"audio", "image_label"}, options=AudioProbeOptions,
               summary="supervised sound classification: a linear probe on the frozen audio tower, trained on the "
                       "other folds, tested on each fold (ESC-50 / UrbanSound8K protocol)")
def run_audio_linear_probe(ctx: EvalContext, reader: Any, options: AudioProbeOptions) -> tuple[dict, int]:
    head = _head(ctx)
    sounds, labels, folds = _read_clips(reader)
    if len(folds) != len(labels):
        raise DataError("audio-linear-probe: some clips were skipped, so their folds are unknown; remove the "
                        "corrupt files named above")
    features = embed_sounds(head, sounds, ctx.device, options.batch_size)
    return fold_linear_probe(features, torch.tensor(labels), folds, len(reader.classes), options.weight_decay), \
        len(labels)


def cross_recall(a: Tensor, b: Tensor, ks: Sequence[int] = (1, 5, 10)) -> dict[str, dict[int, float]]:
    """Recall@k both ways between row-aligned unit-norm ``a`` and ``b`` (pair i is the match of i)."""
    return recall_at_k(a @ b.T, torch.arange(len(b)), ks)


@register_task("audio-retrieval", head_role="audio", needs={"audio", "caption"}, options=AudioZeroShotOptions,
               summary="sound <-> image and sound <-> text recall@1/5/10 on image-sound-text triplets")
@torch.no_grad()
def run_audio_retrieval(ctx: EvalContext, reader: Any, options: AudioZeroShotOptions) -> tuple[dict, int]:
    head = _head(ctx)
    model = head.clip_model(ctx.bundle)
    sounds, images, captions = [], [], []
    for sample in reader:
        sounds.append(sample.audio)
        images.append(ctx.preprocess(sample.image))
        captions.append(sample.caption)
    audio = embed_sounds(head, sounds, ctx.device, options.batch_size)
    image = torch.cat([F.normalize(model.encode_image(torch.stack(images[i:i + 64]).to(ctx.device)).float(), dim=-1)
                       for i in range(0, len(images), 64)]).cpu()
    text = torch.cat([F.normalize(model.encode_text(ctx.bundle.tokenizer(captions[i:i + 64]).to(ctx.device)).float(),
                                  dim=-1) for i in range(0, len(captions), 64)]).cpu()
    image_audio = cross_recall(image, audio)
    audio_text = cross_recall(audio, text)
    result = {"audio_to_image": image_audio["text_to_image"], "image_to_audio": image_audio["image_to_text"],
              "audio_to_text": audio_text["image_to_text"], "text_to_audio": audio_text["text_to_image"],
              "pairs": len(sounds)}
    return result, len(sounds)
