"""The Bundle's tokenizer: open_clip's CLIP BPE, or a Hugging Face tokenizer built only when text is used.

Which one a model gets is decided by its open_clip config (``text_cfg.hf_tokenizer_name``) or by the caller's
``tokenizer=`` folder, through ``TOKENIZER_KINDS`` - never by the model's name. A Hugging Face tokenizer is
built on first call, so the image tower and everything dense work without transformers or the tokenizer files
(SigLIP offline); the first text call then says which files are missing and where to put them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import open_clip
import torch
from open_clip.tokenizer import HFTokenizer

from ..errors import ModelLoadError
from .hub import offline_when_unreachable

Tokenizer = Callable[..., torch.Tensor]
TOKENIZER_FILES_HINT = ("tokenizer_config.json + tokenizer.json, or the vocabulary tokenizer_config.json names "
                        "(spiece.model for SentencePiece, vocab.json + merges.txt for BPE)")


@dataclass
class LazyHFTokenizer:
    """open_clip's ``HFTokenizer``, built on the first call and kept.

    Args:
        source: hub repo id or local folder holding the tokenizer files.
        context_length: token sequence length the text tower takes.
        model_name: the model it belongs to, for the error message.
        mode: open_clip ``tokenizer_mode`` (text_cfg).
        kwargs: open_clip ``tokenizer_kwargs`` (text_cfg), e.g. SigLIP's ``clean='canonicalize'``.
    """

    source: str
    context_length: int
    model_name: str
    mode: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    _impl: Any = field(default=None, init=False, repr=False, compare=False)

    def __call__(self, texts: str | Sequence[str], context_length: int | None = None) -> torch.Tensor:
        return self.build()(texts, context_length=context_length)

    def build(self) -> Any:
        """The HF tokenizer; a ModelLoadError naming the needed files if it cannot be made."""
        if self._impl is None:
            self._impl = self._load()
        return self._impl

    def _load(self) -> Any:
        try:
            import transformers  # noqa: F401  (HFTokenizer imports it too; this names the missing extra)
        except ImportError as exc:
            raise ModelLoadError(f"{self.model_name}: {self._needs()} and transformers to read them: "
                                 "pip install 'clipdense[hf]'") from exc
        try:
            with offline_when_unreachable():
                return HFTokenizer(self.source, context_length=self.context_length, tokenizer_mode=self.mode,
                                   **self.kwargs)
        except (OSError, ValueError, TypeError, KeyError, ImportError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
            raise ModelLoadError(
                f"{self.model_name}: {self._needs()} ({first}); put them in a folder and pass it: "
                f"load_model('{self.model_name}', tokenizer='/path/to/folder'), or fetch the repo into the "
                f"Hugging Face cache where the internet is reachable (huggingface-cli download {self.source}) "
                "and copy that cache (HF_HOME) here") from exc

    def _needs(self) -> str:
        where = f"folder {self.source}" if os.path.isdir(self.source) else f"hf-hub repo {self.source}"
        return f"its text needs the tokenizer files of {where}: {TOKENIZER_FILES_HINT}"

    def __getstate__(self) -> dict[str, Any]:
        """Pickle the recipe, not the built tokenizer (data-loader workers rebuild it on first use)."""
        state = dict(self.__dict__)
        state["_impl"] = None
        return state


def _clip_bpe(name: str, text_cfg: dict[str, Any], override: str | None) -> Tokenizer:
    """open_clip's own choice for configs without an HF tokenizer (SimpleTokenizer, its context length)."""
    return open_clip.get_tokenizer(name)


def _hugging_face(name: str, text_cfg: dict[str, Any], override: str | None) -> Tokenizer:
    return LazyHFTokenizer(source=str(override or text_cfg["hf_tokenizer_name"]),
                           context_length=int(text_cfg.get("context_length", 77)), model_name=name,
                           mode=text_cfg.get("tokenizer_mode"), kwargs=dict(text_cfg.get("tokenizer_kwargs") or {}))


TOKENIZER_KINDS: dict[str, Callable[[str, dict[str, Any], str | None], Tokenizer]] = {
    "clip-bpe": _clip_bpe,
    "hugging-face": _hugging_face,
}


def tokenizer_kind(text_cfg: dict[str, Any], override: str | os.PathLike | None = None) -> str:
    """``hugging-face`` when the config names an HF tokenizer or the caller passes a tokenizer folder."""
    return "hugging-face" if override is not None or text_cfg.get("hf_tokenizer_name") else "clip-bpe"


def build_tokenizer(name: str, override: str | os.PathLike | None = None) -> Tokenizer:
    """The tokenizer of the registered open_clip model ``name``.

    Args:
        name: an open_clip model name (built-in, tiny, or registered from a checkpoint).
        override: a local tokenizer folder (or hub repo id) replacing the config's tokenizer.
    """
    config = open_clip.get_model_config(name) or {}
    text_cfg = dict(config.get("text_cfg", {}))
    return TOKENIZER_KINDS[tokenizer_kind(text_cfg, override)](name, text_cfg, None if override is None
                                                                else str(override))
