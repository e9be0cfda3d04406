"""Class lists as GLIP prompts, however long: split into prompts that each fit the text tower's context.

GLIP writes a class list as one prompt ("red circle. blue star."); the text tower reads at most its context (77
tokens for CLIP), so a long vocabulary is split into consecutive chunks whose prompts fit, each chunk is scored as
its own prompt, and the candidates of all chunks are merged before one NMS (``GLIPHead.detect``).
"""
from __future__ import annotations

from typing import Any, Sequence

from ...data.phrases import token_count
from ...errors import ConfigError


def prompt_chunks(tokenizer: Any, names: Sequence[str], context: int) -> list[list[int]]:
    """Class indices split into consecutive groups whose prompt fits ``context`` tokens (start and end tokens
    included); a single name too long for it is refused in one line."""
    if not names:
        raise ConfigError("classes: expected at least one class name")
    limit = context - 2
    lengths = token_count(tokenizer, [f"{' '.join(str(n).split())}." for n in names])
    chunks: list[list[int]] = [[]]
    used = 0
    for index, length in enumerate(lengths):
        if length > limit:
            raise ConfigError(f"class {names[index]!r}: {length} tokens, more than the text tower's {limit}")
        if chunks[-1] and used + length > limit:   # "name." counts the full stop that joins it to the next name
            chunks.append([])
            used = 0
        chunks[-1].append(index)
        used += length
    return chunks
