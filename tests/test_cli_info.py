"""`clipdense info` lists every registered objective with the Sample fields it needs."""
from __future__ import annotations

from clipdense.cli.main import main
from clipdense.objectives import OBJECTIVES


def test_info_lists_objectives_and_their_needs(capsys) -> None:
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "(none installed)" not in out
    listed = [line.split()[0] for line in out.split("objectives")[1].splitlines()[1:] if line.startswith("  ")]
    assert set(OBJECTIVES) <= set(listed)
    assert "  clip       needs caption" in out
