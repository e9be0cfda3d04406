"""Federated annotation (LVIS): which classes were checked on an image besides those with boxes.

LVIS does not check every class on every image. For each image it lists the classes verified *absent*
(``neg_category_ids``) and the classes whose instances were not all annotated (``not_exhaustive_category_ids``);
every other class without a box is unknown there. Evaluation needs both lists (a detection of an unknown class is
not a false positive; an unmatched detection of a not-exhaustive class is ignored), so they travel with the sample.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Federated:
    """Class indices (into the reader's class list) verified absent, and those annotated non-exhaustively.

    Args:
        negative: (K,) int64 classes checked and not in the image.
        not_exhaustive: (M,) int64 classes present whose instances are not all boxed.
    """

    negative: torch.Tensor
    not_exhaustive: torch.Tensor

    @classmethod
    def of(cls, negative: list[int], not_exhaustive: list[int]) -> "Federated":
        """From plain lists (sorted, duplicates removed)."""
        return cls(torch.tensor(sorted(set(negative)), dtype=torch.long),
                   torch.tensor(sorted(set(not_exhaustive)), dtype=torch.long))
