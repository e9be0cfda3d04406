"""The layers are a contract (pyproject's [tool.importlinter]): a module imports only from the layers below it."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_layers_are_kept() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "1 kept, 0 broken" in done.stdout


def test_the_contract_names_every_subpackage() -> None:
    """A new top-level package (video, audio, generation ...) must be placed in a layer, not escape the check."""
    import tomllib

    layers = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"][0]["layers"]
    named = {part.strip().removeprefix("clipdense.") for layer in layers for part in layer.replace(":", "|").split("|")}
    packages = {p.parent.name for p in (ROOT / "src" / "clipdense").glob("*/__init__.py")}
    modules = {p.stem for p in (ROOT / "src" / "clipdense").glob("*.py") if p.stem != "__init__"}
    assert packages | modules == named
