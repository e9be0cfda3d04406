"""bench/clipself_seeds.py: per-seed rows and the mean (min..max) table, on hand-made demo results."""
from __future__ import annotations

import importlib.util
from pathlib import Path

SPEC = importlib.util.spec_from_file_location("clipself_seeds",
                                              Path(__file__).resolve().parents[1] / "bench" / "clipself_seeds.py")
seeds = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(seeds)


def _results(rois: float, crops: float, zeroshot: float) -> dict:
    def model(r: float) -> dict:
        return {"tasks": {"zeroshot": {"top1": zeroshot},
                          "regions": {"crops": {"things": {"top1": crops}},
                                      "dense": {"maskclip": {"rois": {"things": {"top1": r}}}}}}}
    return {"pretrained": model(rois / 4), "clipself boxes": model(rois)}


def test_rows_and_table() -> None:
    per_seed = [seeds.rows_of(_results(0.40, 0.50, 0.9)), seeds.rows_of(_results(0.45, 0.50, 0.8))]
    assert abs(per_seed[0]["clipself boxes"]["of teacher crops"] - 0.8) < 1e-9
    assert per_seed[0]["pretrained"]["rois stuff"] is None
    lines = seeds.table(per_seed)
    row = next(line for line in lines if line.startswith("| clipself boxes |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    columns = [c.strip() for c in lines[0].strip("|").split("|")]
    assert cells[columns.index("rois things")] == "42.5 (40.0..45.0)"
    assert cells[columns.index("of teacher crops")] == "85.0 (80.0..90.0)"
    assert cells[columns.index("rois stuff")] == "–"


def test_reuse_keeps_evaluated_seeds(tmp_path, monkeypatch, capsys) -> None:
    """--reuse runs only the seeds without an evaluation under --out; the table covers them all."""
    import json
    import sys

    ran: list[int] = []

    def fake_demo(config, log) -> None:
        ran.append(config.seed)
        (Path(config.out) / "eval").mkdir(parents=True)
        (Path(config.out) / "eval" / "results.json").write_text(json.dumps(_results(0.4, 0.5, 0.9)))

    monkeypatch.setattr(seeds, "run_demo", fake_demo)
    argv = ["clipself_seeds.py", "--seeds", "0,1", "--pretrained", "synthworld", "--out", str(tmp_path), "--reuse"]
    monkeypatch.setattr(sys, "argv", argv[:2] + ["0"] + argv[3:])
    seeds.main()
    monkeypatch.setattr(sys, "argv", argv)
    seeds.main()
    assert ran == [0, 1]
    assert "| clipself boxes | 90.0 (90.0..90.0) | 40.0 (40.0..40.0)" in capsys.readouterr().out
