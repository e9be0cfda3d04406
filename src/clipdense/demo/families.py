"""`clipdense demo FAMILY`: one short story per family (<= 3 minutes on 2 CPU cores each), beside the main demo.

A family registers ``name -> "module:function"`` here; the function takes ``(out: Path, log)`` and returns the path of
the report it wrote (``out/report.md`` with its pictures). Modules are imported on demand so one family's extras
never burden another.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Callable

from ..errors import ConfigError

FamilyDemo = Callable[[Path, Callable[[str], None]], Path]

#: family name -> "module:function" under clipdense.demo
FAMILY_DEMOS: dict[str, str] = {
    "draw": "draw:run_draw_demo",
    "audio": "audio:run_audio_demo",
    "video": "video:run_video_demo",
    "3d": "threed:run_3d_demo",
    "panoptic": "panoptic:run_panoptic_demo",
    "grounding": "grounding:run_grounding_demo",
}


def family_demo(name: str) -> FamilyDemo:
    """The demo function registered under ``name`` (one line naming the choices otherwise)."""
    if name not in FAMILY_DEMOS:
        choices = ", ".join(sorted(FAMILY_DEMOS)) or "none yet"
        raise ConfigError(f"demo {name!r}: unknown family; choose one of: {choices} (or no name for the main demo)")
    module_name, function = FAMILY_DEMOS[name].split(":")
    return getattr(importlib.import_module(f"{__package__}.{module_name}"), function)
