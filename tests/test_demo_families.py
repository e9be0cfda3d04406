"""`clipdense demo FAMILY`: the registry of the families' short demos."""
from __future__ import annotations

from pathlib import Path

import pytest

from clipdense.cli.main import main
from clipdense.demo import families


def test_unknown_family_is_one_line(capsys: pytest.CaptureFixture) -> None:
    assert main(["demo", "no-such-family"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "demo 'no-such-family': unknown family" in err[0]


def test_a_registered_family_runs_into_its_out_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setitem(families.FAMILY_DEMOS, "probe", "families:_probe_for_tests")

    def probe(out: Path, log) -> Path:
        out.mkdir(parents=True)
        (out / "report.md").write_text("# probe\n")
        log("probe ran")
        return out / "report.md"
    monkeypatch.setattr(families, "_probe_for_tests", probe, raising=False)
    assert main(["demo", "probe", "--out", str(tmp_path / "d")]) == 0
    assert (tmp_path / "d" / "report.md").read_text() == "# probe\n"
    assert "probe ran" in capsys.readouterr().out
    assert main(["demo", "probe", "--quick", "--out", str(tmp_path / "e")]) == 2    # a main-demo flag
    assert "--quick: a main-demo flag" in capsys.readouterr().err
