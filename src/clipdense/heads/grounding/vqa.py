"""GLIPv2's VQA head (Zhang et al. 2022, sec. 3.3): answer classification on GLIP's *fused* features.

The prompt is the question. The image and the question run through the GLIP head's pyramid and deep-fusion layers
exactly as for grounding (``GLIPHead.predict``'s first step), so the image features already know what the question
asks about and the question's tokens have looked at the image. Then

- the question is the masked mean of its fused tokens;
- the image is pooled over every position of every fused level twice: by an attention whose query is the question
  (where the question points) and by a plain mean (what the whole scene holds);
- an MLP on [attended image, mean image, question] gives one logit per answer of the vocabulary.

The vocabulary (``GLIPConfig.answers``: the training annotations' most frequent answers) is saved with the head, so
a head without one has no VQA part and loads as before. Loss: binary cross-entropy against VQA's soft scores
(min(1, annotators giving the answer / 3)) summed over answers, mean over questions: the standard VQA training
target (Teney et al. 2018), which GLIPv2 fine-tunes with.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError


class VQAPart(nn.Module):
    """Pool the fused image levels and question tokens, then classify the answer.

    Args:
        channels: the fused image levels' channels.
        text_dim: the fused tokens' width.
        answers: size of the answer vocabulary.
        hidden: the MLP's hidden width.
    """

    def __init__(self, channels: int, text_dim: int, answers: int, hidden: int) -> None:
        super().__init__()
        self.query = nn.Linear(text_dim, channels)
        self.key = nn.Linear(channels, channels)
        width = 2 * channels + text_dim
        self.mlp = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, answers))

    def forward(self, levels: Sequence[torch.Tensor], text: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``levels``: fused (B, C, h_i, w_i) maps; ``text`` (B, L, T) fused tokens; ``mask`` (B, L) -> (B, A)."""
        flat = torch.cat([lv.flatten(2).transpose(1, 2) for lv in levels], dim=1)          # (B, N, C)
        real = mask.to(text.dtype)[..., None]
        question = (text * real).sum(1) / real.sum(1).clamp_min(1.0)                       # (B, T)
        attention = (self.key(flat) @ self.query(question)[..., None]).squeeze(-1)         # (B, N)
        weights = (attention * flat.shape[-1] ** -0.5).softmax(-1)
        attended = (weights[..., None] * flat).sum(1)
        return self.mlp(torch.cat([attended, flat.mean(1), question], dim=-1))


def vqa_part(config: Any) -> VQAPart | None:
    """The VQA part a GLIP config asks for (None without an answer vocabulary); a bad vocabulary is one line."""
    answers = list(config.answers)
    if not answers:
        return None
    if not all(isinstance(a, str) and a.strip() for a in answers) or len(set(answers)) != len(answers):
        raise ConfigError("answers: expected distinct non-empty answer strings (the VQA vocabulary)")
    if config.vqa_hidden < 0:
        raise ConfigError(f"vqa_hidden {config.vqa_hidden}: expected a width >= 1 (0 = twice the channels)")
    return VQAPart(config.channels, config.text_dim, len(answers), config.vqa_hidden or 2 * config.channels)


def has_vqa(head: nn.Module) -> bool:
    """Whether ``head`` (a GLIP head) answers questions."""
    return getattr(head, "vqa", None) is not None


def vqa_logits(head: Any, images: Sequence[torch.Tensor], ids: torch.Tensor) -> torch.Tensor:
    """(B, A) answer logits of a GLIP head with a VQA part: image levels and question tokens fused as in
    ``GLIPHead.predict``, then ``VQAPart``."""
    if not has_vqa(head):
        raise ConfigError("this GLIP head has no VQA part (no answer vocabulary): train one with `clipdense train "
                          "--objective glipv2 --objective-arg data=vqa`")
    levels, _, _ = head.image_levels(images)
    text, mask = head.encode_text(ids)
    for layer in head.layers:
        levels, text = layer(levels, text, mask)
    return head.vqa(levels, text, mask)


def vqa_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """BCE against soft scores, summed over answers, mean over questions."""
    return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), reduction="sum") / max(len(logits), 1)


@torch.no_grad()
def answer_probabilities(head: Any, images: Sequence[torch.Tensor], questions: Sequence[str]) -> torch.Tensor:
    """(B, A) sigmoid answer scores of ``questions[i]`` about ``images[i]`` ((3, H, W) in [0, 1]), in eval mode."""
    was = head.training
    head.eval()
    try:
        return vqa_logits(head, list(images), head.tokenize(questions)).sigmoid()
    finally:
        head.train(was)


__all__ = ["VQAPart", "answer_probabilities", "has_vqa", "vqa_logits", "vqa_loss", "vqa_part"]
