"""A toy few-shot problem any CLIP model can learn (solid colours with pixel noise), and the head round trip."""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import clipdense as cd
from clipdense.errors import ModelLoadError
from clipdense.heads.adapters import Adapter

COLOURS = {"crimson": (200, 20, 30), "navy": (20, 30, 160), "lime": (60, 220, 40)}


def write_toy_folder(root: Path, per_class: int, seed: int) -> Path:
    """root/<colour>/<i>.png, 64x64, each pixel jittered so no two images are equal."""
    rng = np.random.default_rng(seed)
    for name, rgb in COLOURS.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = np.clip(np.array(rgb)[None, None] + rng.normal(0, 25, (64, 64, 3)), 0, 255)
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{i:03d}.png")
    return root


@functools.lru_cache(maxsize=1)
def other_weights() -> cd.models.Bundle:
    """tiny-vit-t8 with another random init: same architecture and name, other weights."""
    return cd.load_model("tiny-vit-t8", device="cpu", init_seed=1)


def assert_head_roundtrip(adapter: Adapter, path: Path, bundle: cd.models.Bundle) -> None:
    """The head file at ``path`` reloads to identical logits on ``bundle`` and is refused on other weights."""
    again = cd.load_head(path, bundle)
    assert type(again) is type(adapter) and again.classes == adapter.classes
    pixels = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = adapter.logits(adapter.encode_images(pixels))
        got = again.logits(again.encode_images(pixels))
    assert torch.equal(expected, got)
    with pytest.raises(ModelLoadError, match="other weights of the same model"):
        cd.load_head(path, other_weights())
