"""CoOp (Zhou et al., IJCV 2022): learnable context vectors in the text prompt.

``[SOT] v1 .. vM classname . [EOT]`` where the v's are trained and everything else is frozen;
unified (one context for all classes) or class-specific, class token at the end, middle or front.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError
from .base import Adapter, AdapterConfig
from .prompts import PromptTokens, build_prompt_tokens, init_context, text_prompt_hooks


@dataclass
class PromptConfig(AdapterConfig):
    """Learned text context (CoOp, CoCoOp, MaPLe).

    Args:
        n_ctx: number of context vectors (ignored when ``ctx_init`` gives the words).
        class_position: "end", "middle" or "front" (where the class name sits among the context).
        ctx_init: words whose embeddings initialise the context (e.g. "a photo of a"); "" = random.
    """

    n_ctx: int = 4
    class_position: str = "end"
    ctx_init: str = ""


@dataclass
class CoOpConfig(PromptConfig):
    """CoOp's prompt; ``class_specific``: one context per class (only trained classes can then be scored)."""

    class_specific: bool = False


class CoOp(Adapter):
    """Context optimisation (``Config``: ``CoOpConfig``)."""

    method = "coop"
    Config = CoOpConfig
    trained = True

    def __init__(self, bundle: Any, classes: Sequence[str], config: PromptConfig | None = None) -> None:
        super().__init__(bundle, classes, config)
        ctx, self.n_ctx = init_context(self.clip, bundle.tokenizer, self.config.n_ctx, self.config.ctx_init)
        self.class_position = self.config.class_position
        self.class_specific = bool(getattr(self.config, "class_specific", False))
        build_prompt_tokens(bundle.tokenizer, self.classes[:1], self.n_ctx, self.class_position)  # validate early
        if self.class_specific:
            ctx = ctx[None].repeat(len(self.classes), 1, 1)
        self.ctx = nn.Parameter(ctx.to(self.device))
        self._prompt_cache: dict[tuple[str, ...], PromptTokens] = {}

    def head_config(self) -> dict[str, Any]:
        """The learned context replaces the init words: a file records their count, not the words."""
        return {**super().head_config(), "n_ctx": self.n_ctx, "ctx_init": ""}

    def prompts(self, classnames: Sequence[str]) -> PromptTokens:
        """Token ids and context mask for ``classnames`` (memoised; on the model's device)."""
        key = tuple(classnames)
        if key not in self._prompt_cache:
            p = build_prompt_tokens(self.bundle.tokenizer, classnames, self.n_ctx, self.class_position)
            self._prompt_cache[key] = PromptTokens(p.tokens.to(self.device), p.ctx_mask.to(self.device))
        return self._prompt_cache[key]

    def context_for(self, classnames: Sequence[str]) -> torch.Tensor:
        """(C, n_ctx, width) context per class."""
        if not self.class_specific:
            return self.ctx[None].expand(len(classnames), -1, -1)
        columns = self.trained_columns(classnames)
        if bool((columns < 0).any()):
            unknown = [c for c, i in zip(classnames, columns.tolist()) if i < 0]
            raise ConfigError(f"class-specific CoOp has no context for classes it was not trained on: {unknown[:3]}")
        return self.ctx[columns]

    def encode_prompts(self, tokens: torch.Tensor, mask: torch.Tensor, ctx: torch.Tensor,
                       deep: Sequence[torch.Tensor] = ()) -> torch.Tensor:
        """(N, D) unit-norm text features of prompts whose context positions hold ``ctx`` (N, n, width)."""
        with text_prompt_hooks(self.clip, mask, ctx, deep):
            return F.normalize(self.clip.encode_text(tokens).float(), dim=-1)

    def text_features(self, classnames: Sequence[str]) -> torch.Tensor:
        """(C, D) class embeddings under the learned context."""
        p = self.prompts(classnames)
        return self.encode_prompts(p.tokens, p.ctx_mask, self.context_for(classnames))

    def logits(self, features: torch.Tensor, classnames: Sequence[str] | None = None) -> torch.Tensor:
        names = self.resolve_classes(classnames)
        return self.logit_scale() * features.to(self.device) @ self.text_features(names).T
