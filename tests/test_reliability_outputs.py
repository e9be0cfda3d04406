"""Issue 32, outputs planned before work: every output flag of every command, given a path under an existing FILE,
is exit 2 and one line naming that file, with nothing written and no model loaded. The flags are found in the
parsers (``output_flags``): a new output flag fails ``test_every_output_flag_has_a_case`` until it has a row here.

Also: the files written BESIDE the named one (segment's label map, eval's Markdown, draw's PNG, detect's pictures of
several images, distill's ensemble) are checked before the work; pictures are written atomically."""
from __future__ import annotations

import argparse
import importlib
import os
import pkgutil

import pytest
from PIL import Image

import clipdense.cli
from clipdense.cli.main import build_parser, main
from test_reliability_flags import _SWITCHES, _commands

#: (command, flag) -> a command line reaching the output check; {bad} is a path under a file, {img} an image,
#: {imgs} a folder of images. Several rows per flag where the command has several forms (one image / a folder).
CASES: dict[tuple[tuple[str, ...], str], list[list[str]]] = {
    (("segment",), "--out"): [["segment", "{img}", "--classes", "a,b", "--out", "{bad}.png"],
                              ["segment", "{imgs}", "--classes", "a,b", "--out", "{bad}"],
                              ["segment", "{img}", "--classes", "a,b", "--head", "h.safetensors", "--panoptic",
                               "--out", "{bad}.png"]],
    (("classify",), "--out"): [["classify", "{imgs}", "--classes", "a,b", "--out", "{bad}"]],
    (("data", "synth"), "--out"): [["data", "synth", "--out", "{bad}"]],
    (("eval",), "--out"): [["eval", "--data", "{imgs}", "--out", "{bad}.json"]],
    (("train",), "--out"): [["train", "--data", "{imgs}", "--steps", "1", "--out", "{bad}"]],
    (("distill",), "--out"): [["distill", "--data", "{imgs}", "--steps", "1", "--out", "{bad}"]],
    (("demo",), "--out"): [["demo", "--quick", "--out", "{bad}"], ["demo", "3d", "--out", "{bad}"]],
    (("adapt",), "--out"): [["adapt", "--method", "linear-probe", "--data", "{imgs}", "--out", "{bad}.safetensors"]],
    (("detect",), "--out"): [["detect", "{img}", "--head", "h.safetensors", "--out", "{bad}.png"],
                             ["detect", "{img}", "{img}", "--head", "h.safetensors", "--out", "{bad}.png"],
                             ["detect", "{imgs}", "--head", "h.safetensors", "--out", "{bad}"]],
    (("detect",), "--json"): [["detect", "{img}", "--head", "h.safetensors", "--json", "{bad}.json"],
                              ["detect", "--proposals", "--head", "h.safetensors", "--data", "{imgs}",
                               "--json", "{bad}.json"]],
    (("ground",), "--out"): [["ground", "{img}", "a red circle", "--head", "h.safetensors", "--out", "{bad}.png"]],
    (("ground",), "--json"): [["ground", "{img}", "a red circle", "--head", "h.safetensors", "--json",
                               "{bad}.json"]],
    (("vqa",), "--json"): [["vqa", "{img}", "What colour is it?", "--head", "h.safetensors", "--json", "{bad}.json"]],
    (("depth",), "--out"): [["depth", "{img}", "--out", "{bad}.png"]],
    (("draw",), "--out"): [["draw", "a cat", "--steps", "1", "--out", "{bad}.svg"]],
    (("sketch",), "--out"): [["sketch", "{img}", "--steps", "1", "--out", "{bad}.svg"]],
    (("export",), "--out"): [["export", "tiny-vit-t8", "--format", "onnx", "--out", "{bad}"]],
}
#: the names whose call would be work (a model loaded, a run or a world started): replaced by a failing stub
WORK = ("load_cli_model", "load_model", "run_training", "run_demo", "write_world", "segment",
        "detect", "ground", "depth", "clipdraw", "sketch", "export_onnx", "run_folder", "evaluate")


def output_flags() -> list[tuple[tuple[str, ...], str]]:
    """(command, flag) of every flag named --out / --json that takes a value (a path the command writes)."""
    found = []
    for command, parser in _commands(build_parser()):
        for action in parser._actions:   # noqa: SLF001
            if isinstance(action, (*_SWITCHES, argparse._SubParsersAction)) or action.nargs == 0:   # noqa: SLF001
                continue
            flags = [f for f in action.option_strings if f in ("--out", "--json", "--output")]
            found += [(command, flags[0])] if flags else []
    return found


ROWS = [(key, argv) for key, rows in CASES.items() for argv in rows]


def test_every_output_flag_has_a_case():
    missing = [f"{' '.join(c)} {f}" for c, f in output_flags() if (c, f) not in CASES]
    assert not missing, f"output flags without a planned-output case in CASES: {missing}"
    assert len(output_flags()) >= 15


@pytest.fixture
def no_work(monkeypatch):
    """Every CLI module's handle on a model, a run, a world or a task replaced by a stub that fails the test."""
    def stub(name):
        def refuse(*_, **__):
            raise AssertionError(f"{name} called: the output was not checked first")
        return refuse

    modules = [importlib.import_module(f"clipdense.cli.{m.name}") for m in pkgutil.iter_modules(clipdense.cli.__path__)]
    for module in [*modules, importlib.import_module("clipdense.models"), importlib.import_module("clipdense.demo")]:
        for name in WORK:
            if callable(getattr(module, name, None)):
                monkeypatch.setattr(module, name, stub(f"{module.__name__}.{name}"))


@pytest.fixture
def place(tmp_path):
    Image.new("RGB", (32, 32), "red").save(tmp_path / "img.png")
    (tmp_path / "imgs").mkdir()
    Image.new("RGB", (32, 32), "blue").save(tmp_path / "imgs" / "a.png")
    (tmp_path / "blocker").write_text("a file, not a folder")
    return tmp_path


def _tree(root) -> set[str]:
    return {os.path.relpath(os.path.join(d, f), root) for d, _, files in os.walk(root) for f in files} | \
           {os.path.relpath(d, root) for d, _, _ in os.walk(root)}


def _run(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code)


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("row", ROWS, ids=lambda r: " ".join(r[1][:2]) + " " + r[0][1])
def test_output_under_a_file_is_refused_before_any_work(row, place, no_work, capsys, monkeypatch):
    (command, flag), template = row
    monkeypatch.chdir(place)
    fill = {"bad": str(place / "blocker" / "x"), "img": str(place / "img.png"), "imgs": str(place / "imgs")}
    before = _tree(place)
    assert _run([part.format(**fill) for part in template]) == 2
    line = _one_line(capsys)
    assert f"{flag} " in line and f"{place / 'blocker'} is a file, not a folder" in line, line
    assert _tree(place) == before   # nothing written


def _folder_in_place_of(path) -> None:
    path.mkdir(parents=True)


BESIDE = [   # (argv with {tmp}, the file written beside --out that is made a folder)
    (["segment", "{tmp}/img.png", "--classes", "a,b", "--out", "{tmp}/o.png"], "o_labels.png"),
    (["segment", "{tmp}/img.png", "--classes", "a,b", "--head", "h", "--panoptic", "--out", "{tmp}/o.png"],
     "o_panoptic.json"),
    (["eval", "--data", "{tmp}/imgs", "--out", "{tmp}/r.json"], "r.md"),
    (["draw", "a cat", "--steps", "1", "--out", "{tmp}/d.svg"], "d.png"),
    (["sketch", "{tmp}/img.png", "--steps", "1", "--out", "{tmp}/d.svg"], "d.png"),
    (["detect", "{tmp}/img.png", "{tmp}/imgs/a.png", "--head", "h", "--out", "{tmp}/b.png"], "a_b.png"),
    (["distill", "--data", "{tmp}/imgs", "--steps", "1", "--out", "{tmp}/run", "--ensemble", "0.7"],
     "run/ensemble.safetensors"),
    (["ground", "--pseudo-label", "{tmp}/imgs", "--head", "h", "--out", "{tmp}/p.json"], "p.yaml"),
]


@pytest.mark.parametrize("argv, beside", BESIDE, ids=lambda v: v if isinstance(v, str) else v[0])
def test_a_file_written_beside_the_output_is_checked_first(argv, beside, place, no_work, capsys):
    _folder_in_place_of(place / beside)
    before = _tree(place)
    assert _run([part.format(tmp=place) for part in argv]) == 2
    line = _one_line(capsys)
    assert f"{place / beside} (written with it) is a folder" in line, line
    assert _tree(place) == before


def test_two_images_with_one_stem_would_overwrite_one_picture(place, no_work, capsys):
    (place / "other").mkdir()
    Image.new("RGB", (8, 8)).save(place / "other" / "img.png")
    code = _run(["detect", str(place / "img.png"), str(place / "other" / "img.png"), "--head", "h",
                 "--out", str(place / "b.png")])
    assert code == 2 and "two outputs would be the same file" in _one_line(capsys)


def test_an_output_folder_that_is_a_file_is_named(place, no_work, capsys):
    assert _run(["export", "tiny-vit-t8", "--format", "onnx", "--out", str(place / "img.png")]) == 2
    assert "is a file, expected a folder for the graphs" in _one_line(capsys)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_an_unwritable_folder_is_named(place, no_work, capsys):
    locked = place / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert _run(["depth", str(place / "img.png"), "--out", str(locked / "d.png")]) == 2
        assert f"{locked} is not writable" in _one_line(capsys)
    finally:
        locked.chmod(0o700)


def test_a_picture_is_written_atomically(tmp_path, monkeypatch):
    """A save that fails half-way leaves the old picture whole and no temporary file behind."""
    from clipdense import config

    target = tmp_path / "o.png"
    Image.new("RGB", (4, 4), "red").save(target)
    old = target.read_bytes()

    def broken_fsync(_):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(config.os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        config.atomic_save_picture(Image.new("RGB", (64, 64), "blue"), target)
    assert target.read_bytes() == old and sorted(p.name for p in tmp_path.iterdir()) == ["o.png"]
    monkeypatch.undo()
    config.atomic_save_picture(Image.new("RGBA", (5, 3), "blue"), tmp_path / "o.jpg")   # no alpha in JPEG
    assert Image.open(tmp_path / "o.jpg").size == (5, 3)
