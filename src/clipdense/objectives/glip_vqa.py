"""GLIPv2's VQA fine-tuning: ``clipdense train --objective glipv2 --objective-arg data=vqa --data WORLD_OR_VQA``.

Every sample is a question about an image (the ``question`` field: VQAv2 files, a world written with ``--vqa``).
The question is the GLIP prompt; the head's fusion layers and pyramid run as for grounding and its VQA part
(``heads/grounding/vqa.py``) classifies the answer over a vocabulary built from the training annotations' most
frequent answers (``max_answers`` of them), trained with BCE against VQA's soft scores. The backbone stays frozen;
the GLIP head's pyramid, fusion and VQA part learn (its box and alignment layers get no gradient from questions).

GLIPv2's recipe is grounding pre-training, then VQA fine-tuning: ``init=RUN_DIR`` (or a head file) starts from a
trained GLIP / GLIPv2 head on the same backbone (its fingerprint must match, one line otherwise); the head keeps
that head's architecture (an architecture option given beside ``init`` that disagrees with it is one line) and
gains a fresh VQA part (an init head's own VQA part is replaced, its answers may differ).

Images are resized to fit the head's input: a scale in ``jitter``'s range, capped at 1, since a larger one would crop
and a crop can cut a thing out of the picture and change the answer (a count, a relation). No flips: "left of".
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torchvision.transforms.functional as TF

from ..data.readers import DataInfo
from ..data.sample import Sample
from ..data.transforms import Compose, ScaleJitter
from ..errors import ConfigError, DataError
from ..heads.grounding import GLIPConfig, GLIPHead
from ..heads.grounding.vqa import vqa_logits, vqa_loss


def check_vqa_options(options: Any) -> None:
    """One line for a VQA option out of range, or one given without ``data=vqa`` (before any model is built)."""
    if options.max_answers < 2:
        raise ConfigError(f"max_answers {options.max_answers}: expected an answer vocabulary of at least 2")
    if options.data != "vqa":
        given = [k for k, v in (("init", options.init), ("answers", options.answers)) if v]
        if given:
            raise ConfigError(f"{given[0]}: only with data=vqa (GLIPv2's VQA fine-tuning)")
    elif options.answers:
        raise ConfigError("answers: the VQA vocabulary is built from the training annotations; cap it with "
                          "max_answers=N")


def answer_vocabulary(options: Any, info: DataInfo) -> list[str]:
    """The ``max_answers`` most frequent training answers (the data's own ranking)."""
    if not info.answers:
        raise DataError("glipv2 with data=vqa needs question data with answers (VQAv2 annotations, a world written "
                        "with --vqa)")
    return list(info.answers[:options.max_answers])


def _architecture_clash(options: Any, init: GLIPConfig) -> str | None:
    """The first architecture option set away from its default that the init head's config contradicts."""
    default = GLIPConfig()
    for f in dataclasses.fields(GLIPConfig):
        if f.name in ("answers", "vqa_hidden", "novel"):
            continue
        given = getattr(options, f.name)
        if given != getattr(default, f.name) and given != getattr(init, f.name):
            return f"{f.name}={given!r}: with init the head keeps the init head's architecture " \
                   f"({f.name}={getattr(init, f.name)!r}); leave it out"
    return None


def vqa_head(bundle: Any, options: Any, info: DataInfo, config: GLIPConfig) -> GLIPHead:
    """The head to fine-tune: ``config`` (the options' architecture) or the ``init`` head's, with a VQA part over
    the training answers; with ``init`` every other weight starts from that head."""
    answers = answer_vocabulary(options, info)
    if not options.init:
        return GLIPHead(bundle, dataclasses.replace(config, answers=answers))
    from ..heads.expect import load_expected

    base = load_expected(options.init, bundle, "grounder", "init")   # other backbone weights: one line
    clash = _architecture_clash(options, base.config)
    if clash:
        raise ConfigError(clash)
    head = GLIPHead(bundle, dataclasses.replace(base.config, answers=answers, vqa_hidden=options.vqa_hidden),
                    base.classes)
    state = {k: v for k, v in base.state_dict().items() if not k.startswith("vqa.")}
    missing, unexpected = head.load_state_dict(state, strict=False)
    assert not unexpected and all(k.startswith("vqa.") for k in missing), (missing, unexpected)
    return head


@dataclass
class VQATransform:
    """(sample, generator) -> image (3, S, S) padded bottom-right, size (2,), question ids (L,) and the soft answer
    scores (A,) over ``answers``."""

    image_size: int
    context: int
    tokenizer: Any
    answers: tuple[str, ...]
    jitter: tuple[float, float]

    def __call__(self, sample: Sample, generator: torch.Generator) -> dict[str, torch.Tensor]:
        if sample.question is None:
            raise DataError(f"{sample.key}: no question (glipv2 data=vqa reads question data)")
        low, high = min(self.jitter[0], 1.0), min(self.jitter[1], 1.0)
        sample = Compose([ScaleJitter(self.image_size, (low, high))])(sample, generator)
        image = torch.zeros(3, self.image_size, self.image_size)
        pixels = TF.to_tensor(sample.image)
        image[:, :pixels.shape[1], :pixels.shape[2]] = pixels
        ids = self.tokenizer([sample.question.text], context_length=self.context)[0]
        return {"image": image, "size": torch.tensor(pixels.shape[1:]), "ids": ids,
                "target": torch.tensor(sample.question.scores(self.answers))}


def vqa_transform(head: GLIPHead, tokenizer: Any, jitter: Any) -> VQATransform:
    c = head.config
    return VQATransform(c.image_size, c.context, tokenizer, tuple(c.answers), (float(jitter[0]), float(jitter[1])))


def vqa_step(head: GLIPHead, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The VQA loss of a batch, and the mean soft score of the top answer (a running VQA accuracy)."""
    images = [image[:, :h, :w] for image, (h, w) in zip(batch["image"], batch["size"].tolist())]
    logits = vqa_logits(head, images, batch["ids"])
    loss = vqa_loss(logits, batch["target"])
    score = batch["target"].gather(1, logits.detach().argmax(1, keepdim=True)).mean()
    return {"loss": loss, "loss_vqa": loss.detach(), "vqa_score": score}


__all__ = ["VQATransform", "answer_vocabulary", "check_vqa_options", "vqa_head", "vqa_step", "vqa_transform"]
