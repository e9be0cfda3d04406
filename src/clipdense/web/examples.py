"""Example photos for the page: scenes of the synthetic world the shipped model was trained on and that
`clipdense demo` evaluates (its validation split), with their class names, so a fresh install has
something to click."""
from __future__ import annotations

import os
from io import BytesIO
from pathlib import Path

from PIL import Image

from ..config import atomic_write_bytes
from ..data.world.scenes import SynthConfig, generate_scene, make_vocabulary
from ..models.text_cache import cache_root

EXAMPLE_SIZE = 128


def examples_folder() -> Path:
    """Beside the text cache: ``$XDG_CACHE_HOME/clipdense/web-examples``."""
    return cache_root().parent / "web-examples"


def world_examples(count: int = 4, image_size: int = EXAMPLE_SIZE, folder: str | os.PathLike | None = None
                   ) -> list[tuple[str, str]]:
    """``count`` validation scenes with at least one object, as (PNG path, 'thing, ..., stuff') pairs.

    Scenes are drawn once and kept (the world's generator is deterministic, so the files never go stale).
    """
    folder = Path(folder) if folder is not None else examples_folder()
    cfg = SynthConfig(image_size=image_size)
    vocabulary = make_vocabulary(cfg)
    found: list[tuple[str, str]] = []
    index = 0
    while len(found) < count and index < 20 * count:
        scene = generate_scene(cfg, vocabulary, "val", index)
        names = list(dict.fromkeys([thing.class_name for thing in scene.things] + scene.stuff))
        path = folder / f"val-{index:04d}-{image_size}.png"
        index += 1
        if not scene.things:
            continue
        if not path.is_file():
            buffer = BytesIO()
            Image.fromarray(scene.image).save(buffer, format="PNG")
            atomic_write_bytes(path, buffer.getvalue())
        found.append((str(path), ", ".join(names)))
    return found
