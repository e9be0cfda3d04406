"""Issue 16: every bad command line of every subcommand is exit 2 and exactly one line on stderr that names the
flag or file and what was expected, with no traceback (argparse's own errors included)."""
from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clipdense.cli.main import main
from clipdense.data import SynthConfig, write_world


class _Payload:
    """A pickle that would run a command if anything unpickled it."""

    def __reduce__(self):
        return (os.system, ("touch clipdense-pickle-ran",))


def _fake_run(folder: Path, model: str = "tiny-vit-t8") -> Path:
    """A run folder with a config and a (placeholder) complete checkpoint: enough for the checks that guard it."""
    step = folder / "checkpoints" / "step-00000001"
    step.mkdir(parents=True)
    (step / "model.safetensors").write_bytes(b"")
    (step / "state.pt").write_bytes(b"")
    (folder / "config.yaml").write_text(f"model: {model}\nobjective: clip\ndata: nowhere\n")
    return folder


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("badinputs")
    world = root / "world"
    write_world(SynthConfig(out=str(world), train=4, val=2, image_size=32, classify_train_per_class=1,
                            classify_val_per_class=1))
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((24, 24, 3)) * 255).astype("uint8")).save(root / "img.png")
    (root / "file.txt").write_text("a text file\n")
    (root / "text.pt").write_text("hello, not weights\n")
    torch.save({"weight": torch.zeros(2), "payload": _Payload()}, root / "evil.pt")
    for suffix in (".bin", ".pth"):
        (root / f"evil{suffix}").write_bytes((root / "evil.pt").read_bytes())
    local = root / "localdir"
    local.mkdir()
    from clipdense.models import model_config
    (local / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_config("tiny-vit-t8")}))
    (local / "open_clip_pytorch_model.bin").write_bytes((root / "evil.pt").read_bytes())
    (root / "bad.yaml").write_text("steps: [1, 2\nlr: : 3\n")
    (root / "unknown.yaml").write_text("stepz: 3\n")
    (root / "empty").mkdir()
    (root / "notempty").mkdir()
    (root / "notempty" / "keep.txt").write_text("mine")
    (root / "folder.json").mkdir()
    _fake_run(root / "run")
    _fake_run(root / "other")
    _fake_run(root / "run-s8", model="tiny-vit-s8")
    (root / "noconfig" / "checkpoints").mkdir(parents=True)
    return {"root": str(root), "world": str(world), "img": str(root / "img.png"), "file": str(root / "file.txt"),
            "text_pt": str(root / "text.pt"), "evil": str(root / "evil.pt"), "evil_bin": str(root / "evil.bin"),
            "evil_pth": str(root / "evil.pth"), "local": f"local-dir:{local}", "bad_yaml": str(root / "bad.yaml"),
            "unknown_yaml": str(root / "unknown.yaml"), "empty": str(root / "empty"),
            "notempty": str(root / "notempty"), "folder_json": str(root / "folder.json"), "run": str(root / "run"),
            "other": str(root / "other"), "run_s8": str(root / "run-s8"), "noconfig": str(root / "noconfig"),
            "classify": str(world / "classify" / "train")}


TRAIN = "--data {world} --out {root}/new-run --steps 1 --batch-size 2 --device cpu --num-workers 0"
SEG = "segment {img} --classes a,b --out {root}/seg/o.png --device cpu"
EVAL = "eval --data {world} --tasks zeroshot --device cpu --no-progress"
ADAPT = "adapt --method linear-probe --data {classify} --out {root}/a.safetensors --device cpu"

# (command line, substrings the one error line must hold: the flag or file, and what was expected)
CASES: list[tuple[str, tuple[str, ...]]] = [
    # train: every number is checked before anything is loaded
    (f"train {TRAIN} --checkpoint-every 0", ("--checkpoint-every 0", "expected a step interval >= 1")),
    (f"train {TRAIN} --log-every 0", ("--log-every 0", "expected a step interval >= 1")),
    (f"train {TRAIN} --eval-every -1", ("--eval-every -1", "expected")),
    (f"train {TRAIN} --steps 0", ("--steps 0", "expected a step count >= 1")),
    (f"train {TRAIN} --steps abc", ("--steps", "invalid int value")),
    (f"train {TRAIN} --batch-size 0", ("--batch-size 0", "expected")),
    (f"train {TRAIN} --accum-steps 0", ("--accum-steps 0", "expected")),
    (f"train {TRAIN} --batch-size 3 --accum-steps 2", ("--batch-size 3", "multiple")),
    (f"train {TRAIN} --lr 0", ("--lr 0", "expected a learning rate > 0")),
    (f"train {TRAIN} --lr nan", ("--lr nan", "expected")),
    (f"train {TRAIN} --warmup-steps -3", ("--warmup-steps -3", "expected a step count >= 0")),
    (f"train {TRAIN} --weight-decay -1", ("--weight-decay -1", "expected")),
    (f"train {TRAIN} --grad-clip -1", ("--grad-clip -1", "expected a max gradient norm >= 0")),
    (f"train {TRAIN} --keep-checkpoints -1", ("--keep-checkpoints -1", "expected a count >= 0")),
    (f"train {TRAIN} --num-workers -1", ("--num-workers -1", "expected a process count >= 0")),
    (f"train {TRAIN} --prefetch-batches -2", ("--prefetch-batches -2", "expected")),
    (f"train {TRAIN} --augment-threads -5", ("--augment-threads -5", "expected")),
    (f"train {TRAIN} --seed -1", ("--seed -1", "expected a seed >= 0")),
    (f"train {TRAIN} --ema-decay 1.5", ("--ema-decay 1.5", "expected a decay in [0, 1)")),
    (f"train {TRAIN} --lock-image-blocks -1", ("--lock-image-blocks -1", "expected")),
    (f"train {TRAIN} --precision fp8", ("--precision", "invalid choice")),
    (f"train {TRAIN} --on-nonfinite maybe", ("--on-nonfinite", "invalid choice")),
    (f"train {TRAIN} --objective nope", ("--objective", "invalid choice")),
    (f"train {TRAIN} --objective-arg regions", ("--objective-arg", "expected KEY=VALUE")),
    ("train --data {world} --out {file} --steps 1", ("--out {file}", "is a file, expected a run folder")),
    ("train --data {world} --steps 1", ("--out RUN_DIR is required",)),
    (f"train {TRAIN} --val-data /nonexistent-val", ("--val-data /nonexistent-val", "expected a world folder")),
    ("train --data /nonexistent-data --out {root}/r2 --steps 1", ("--data /nonexistent-data", "no such file")),
    (f"train {TRAIN} --model tiny-vit-t8 --pretrained {{text_pt}}", ("{text_pt}", "not a file written by torch.save")),
    (f"train {TRAIN} --model tiny-vit-t8 --pretrained {{evil}}", ("{evil}", "refused", "pickled")),
    (f"train {TRAIN} --config {{bad_yaml}}", ("--config {bad_yaml}", "not valid YAML at line")),
    (f"train {TRAIN} --config {{root}}/missing.yaml", ("--config {root}/missing.yaml", "file not found")),
    (f"train {TRAIN} --config {{unknown_yaml}}", ("stepz", "unknown config key")),
    ("train --resume /nonexistent-run", ("--resume /nonexistent-run", "no such run folder")),
    ("train --resume {file}", ("--resume {file}", "is a file, expected a run folder")),
    ("train --resume {noconfig}", ("--resume {noconfig}", "config.yaml is missing")),
    ("train --resume {run} --out {other}", ("--out {other}", "already holds a run")),
    ("train --resume {run_s8} --model tiny-vit-t8", ("--resume {run_s8}", "tiny-vit-s8")),
    ("train --data {world} --out {run} --steps 1", ("--out {run}", "already holds checkpoints")),
    # distill: CLIPSelf's options are sizes, counts and weights
    (f"distill {TRAIN} --student-size -5", ("--student-size", "expected a count >= 0")),
    (f"distill {TRAIN} --teacher-size -5", ("--teacher-size", "expected a count >= 0")),
    (f"distill {TRAIN} --student-sizes 64 0", ("--student-sizes", "expected a size in pixels >= 1")),
    (f"distill {TRAIN} --max-regions abc", ("--max-regions", "expected a count (int)")),
    (f"distill {TRAIN} --global-guard -1", ("--global-guard", "expected a number >= 0")),
    (f"distill {TRAIN} --regions nope", ("--regions", "invalid choice")),
    (f"distill {TRAIN} --ensemble 1.5", ("--ensemble", "expected a ratio")),
    (f"distill {TRAIN} --on-nonfinite never", ("--on-nonfinite", "invalid choice")),
    (f"distill {TRAIN} --model tiny-vit-t8 --teacher-cache {{file}}", ("--teacher-cache {file}", "expected a folder")),
    ("distill --boxes {file}", ("--boxes needs --data",)),
    # segment
    (f"{SEG} --short-side 0", ("--short-side", "expected a size in pixels >= 1")),
    (f"{SEG} --short-side -3", ("--short-side", "expected a size in pixels >= 1")),
    (f"{SEG} --window 0", ("--window", "expected a size in pixels >= 1")),
    (f"{SEG} --background-threshold 5", ("--background-threshold", "expected a probability")),
    (SEG + " --templates '{{}} {{}}'", ("--templates", "exactly one '{{}}'")),
    (f"{SEG} --templates nothing-to-fill", ("--templates", "template")),
    (f"{SEG} --mode nope", ("--mode", "invalid choice")),
    ("segment {img} --classes ' , '", ("--classes", "expected a comma-separated list")),
    ("segment {img} --classes a,a", ("--classes", "unique")),
    ("segment {root}/missing.png --classes a", ("{root}/missing.png", "no such image file")),
    ("segment {root} --classes a", ("--out", "a folder run needs --out OUTDIR")),   # a folder is a folder run
    ("segment {root} --classes a --out {file}", ("--out {file}", "is a file, expected a folder")),
    ("classify {img} --classes a --recursive", ("--recursive", "only with a folder of images")),
    ("segment {img} --classes a --runtime onnx", ("--runtime onnx needs --onnx DIR",)),
    ("export tiny-vit-t8 --format onnx --out {root}/e --modes nope", ("--modes 'nope'", "expected comma-separated")),
    ("export tiny-vit-t8 --format onnx --out {file}", ("--out {file}", "is a file, expected a folder")),
    ("segment {file} --classes a", ("{file}", "not a readable image")),
    ("segment {img} --classes a --out {empty}", ("--out {empty}", "is a folder, expected a file path")),
    ("segment {img} --classes a --out {file}/o.png", ("--out {file}/o.png", "is a file, not a folder")),
    ("segment {img} --classes a --out {root}/overlay", ("--out {root}/overlay", "expected a file ending in .png")),
    (f"{SEG} --model tiny-vit-t8 --pretrained {{evil}}", ("{evil}", "refused", "pickled")),
    (f"{SEG} --model {{local}}", ("local-dir:", "refused", "pickled")),
    (f"{SEG} --model nope-model", ("nope-model", "unknown model")),
    # classify
    ("classify {img} --classes a,b --top 0", ("--top", "expected a count >= 1")),
    ("classify {img} --classes a,b --top -1", ("--top", "expected a count >= 1")),
    ("classify {img}", ("--classes is required",)),
    ("classify {img} --classes a,b --templates '{{}} and {{}}'", ("--templates", "exactly one '{{}}'")),
    ("classify {img} --classes a,b --device cpu --model tiny-vit-t8 --pretrained {evil_bin}", ("{evil_bin}", "refused")),
    ("classify {img} --device cpu --adapter /nonexistent-head", ("--adapter /nonexistent-head", "no such file")),
    # eval
    (f"{EVAL} --window 16 --stride 0", ("--stride", "expected a size in pixels >= 1")),
    (f"{EVAL} --stride 8", ("--stride 8", "only used with --window")),
    (f"{EVAL} --image-size -3", ("--image-size", "expected a size in pixels >= 1")),
    (f"{EVAL} --window 0", ("--window", "expected a size in pixels >= 1")),
    (f"{EVAL} --bg-threshold 2", ("--bg-threshold", "expected a probability")),
    (f"{EVAL} --batch-size 0", ("--batch-size", "expected a count >= 1")),
    (f"{EVAL} --out {{file}}", ("--out {file}", "expected a file ending in .json")),
    (f"{EVAL} --out {{folder_json}}", ("--out {folder_json}", "is a folder")),
    (f"{EVAL} --tasks nope", ("--tasks", "unknown")),
    (f"{EVAL} --dense-mode nope", ("--dense-mode", "unknown")),
    (f"{EVAL} --region-methods nope", ("--region-methods", "expected some of rois")),
    (EVAL + " --templates '{{}}{{}}'", ("--templates", "exactly one '{{}}'")),
    (f"{EVAL} --split nope", ("world.json", "no split 'nope'")),
    ("eval --data {notempty} --device cpu", ("--data {notempty}", "a folder without world.json")),
    ("eval --data /nonexistent-data --device cpu", ("--data /nonexistent-data", "no such file")),
    (f"{EVAL} --model tiny-vit-t8 --pretrained {{evil_pth}}", ("{evil_pth}", "refused")),
    # data synth
    ("data synth --out {file}", ("--out {file}", "is a file")),
    ("data synth --out {world} --train 2 --val 1", ("--out {world}", "already holds a world", "--overwrite")),
    ("data synth --out {notempty} --train 2 --val 1", ("--out {notempty}", "holds no world")),
    ("data synth --out {root}/w2 --train -1", ("--train", "expected a count >= 0")),
    ("data synth --out {root}/w2 --image-size 8", ("--image-size", "at least 32")),
    ("data synth --out {root}/w2 --shard-size 0", ("--shard-size", "expected a count >= 1")),
    ("data synth --out {root}/w2 --colours nope", ("--colours", "expected unique names")),
    ("data synth --out {root}/w2 --config {bad_yaml}", ("--config {bad_yaml}", "not valid YAML")),
    # adapt
    (f"{ADAPT} --shots 0", ("--shots", "expected a count >= 1")),
    (f"{ADAPT} --lr 0", ("--lr", "expected a number > 0.0")),
    (f"{ADAPT} --val-shots -1", ("--val-shots", "expected a count >= 0")),
    (f"{ADAPT} --option n_ctx", ("--option", "expected KEY=VALUE")),
    (f"{ADAPT} --base-to-novel", ("--base-to-novel needs --eval-data",)),
    (f"{ADAPT} --method nope", ("--method", "invalid choice")),
    ("adapt --method coop --data {classify} --out {root}/a.pt", ("--out {root}/a.pt", ".safetensors")),
    ("adapt --method coop --data /nonexistent-folder --out {root}/a.safetensors", ("--data /nonexistent-folder",
                                                                                  "no such folder")),
    (f"{ADAPT} --model tiny-vit-t8 --pretrained {{evil}}", ("{evil}", "refused")),
    # demo, detect, serve, info, the top level
    ("demo --out {file}", ("--out {file}", "is a file")),
    ("demo --pretrain-steps -1 --out {root}/demo", ("--pretrain-steps", "expected a step count >= 1")),
    ("demo --config {bad_yaml}", ("--config {bad_yaml}", "not valid YAML")),
    ("detect --head /nonexistent-head", ("give one or more image files",)),
    ("detect {img} --head /nonexistent-head", ("--head /nonexistent-head", "no such file")),
    ("detect --proposals --head /nonexistent-head", ("--proposals needs --data",)),
    ("detect {img} --head /nonexistent-head --min-score 2", ("--min-score", "expected a probability")),
    ("detect --proposals --head /nonexistent-head --top 0", ("--top", "expected a count >= 1")),
    ("detect {img} --head /nonexistent-head --data {world}", ("--data", "only with --proposals")),
    ("detect {img} --head /nonexistent-head --json {file}/d.json", ("--json {file}/d.json", "is a file, not a folder")),
    # ground (issue 26): the sentence is checked before anything is loaded
    ("ground {img} ' ' --head /nonexistent-head", ("sentence", "empty sentence")),
    ("ground {img} 'it is on the left' --head /nonexistent-head", ("sentence", "no noun phrase")),
    ("ground {img} 'a red circle' --head /nonexistent-head", ("--head /nonexistent-head", "no such file")),
    ("ground {img} 'a red circle' --head /nonexistent-head --min-score 2", ("--min-score", "expected a probability")),
    ("ground {img} 'a red circle' --head /nonexistent-head --top 0", ("--top", "expected a count >= 1")),
    ("ground {img} 'a red circle' --head /nonexistent-head --out {file}/x.png", ("--out {file}/x.png", "is a file")),
    # vqa (issue 26): the question first, then the head, the count, the output
    ("vqa {img} ' ' --head /nonexistent-head", ("question", "empty question")),
    ("vqa {img} 'What colour is it?' --head /nonexistent-head", ("--head /nonexistent-head", "no such file")),
    ("vqa {img} 'What colour is it?' --head /nonexistent-head --top 0", ("--top", "expected a count >= 1")),
    ("vqa {img} 'What colour is it?' --head /nonexistent-head --json {file}/x.json",
     ("--json {file}/x.json", "is a file")),
    ("serve --port 0", ("--port", "expected a port >= 1 and <= 65535, got 0")),
    ("serve --max-side 10", ("--max-side", "expected a size in pixels >= 32, got 10")),
    ("serve --host 203.0.113.5 --exit-after 0.1", ("--host 203.0.113.5", "cannot listen on that address")),
    ("serve --host 'bad host!' --exit-after 0.1", ("--host bad host!",)),
    # the families' commands: depth (issue 30), draw / sketch (issue 31)
    ("depth {img} --temperature 0", ("--temperature", "expected a number > 0.0")),
    ("depth {img} --out {file}/x.png", ("--out {file}/x.png", "is a file, not a folder")),
    ("draw 'a red circle' --strokes 0", ("--strokes", "expected a count >= 1")),
    ("draw 'a red circle' --steps -1", ("--steps", "expected a step count >= 1")),
    ("sketch /nonexistent-photo.png", ("/nonexistent-photo.png", "no such image file")),
    ("sketch {img} --strokes 0", ("--strokes", "expected a count >= 1")),
    # search (issue 29): a sentence or a sound against a folder of images
    ("search {root}", ("either a sentence or --audio",)),
    ("search {root} 'a red circle' --audio {img}", ("either a sentence or --audio",)),
    ("search {root} --audio {img}", ("--audio {img}", "not a sound file")),
    ("search {root} --audio {root}/missing.wav", ("{root}/missing.wav", "no such file")),
    ("search {empty} 'a red circle'", ("{empty}", "no image files")),
    ("search {file} 'a red circle'", ("{file}", "is a file, expected a folder")),
    ("search {root} 'a red circle' --top 0", ("--top", "expected a count >= 1")),
    ("search {root} '  '", ("the sentence is empty",)),
    ("search {root} 'a red circle' --audio-tower {run}", ("--audio-tower", "only with --audio")),
    # issue 32: artefacts of the wrong kind, paths that are missing or folders, non-finite option values
    ("serve --heads {file} --exit-after 0.1", ("--heads {file}", "not a head file")),
    ("serve --heads {img} --exit-after 0.1", ("--heads {img}", "not a head file")),
    (f"{SEG} --model {{root}}/missing/model.safetensors", ("{root}/missing/model.safetensors", "no such file or folder")),
    (f"{SEG} --model tiny-vit-t8 --pretrained {{empty}}", ("{empty}", "a folder, expected a weights file")),
    (f"train {TRAIN} --objective-arg crop_scale=[.nan,1]", ("crop_scale", "expected a finite number")),
    (f"train {TRAIN} --objective-arg max_logit_scale=.inf", ("max_logit_scale", "expected a finite number")),
    (f"{EVAL} --task-arg zeroshot.nope=1", ("--task-arg zeroshot.nope", "unknown option")),
    (f"{SEG} --device gpu0", ("--device", "expected a device such as cpu")),
    ("info --bogus", ("--bogus", "unrecognized arguments")),
    ("nope", ("nope", "invalid choice")),
]


def _run(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:   # argparse's own errors
        return int(exc.code)


@pytest.mark.parametrize("line,expected", CASES, ids=[c[0][:60] for c in CASES])
def test_bad_command_line_is_one_clear_line(files, capsys, monkeypatch, tmp_path, line: str,
                                            expected: tuple[str, ...]) -> None:
    monkeypatch.chdir(tmp_path)   # a pickle that ran would leave its file here
    argv = [word.format(**files) for word in shlex.split(line)]
    code = _run(argv)
    err = capsys.readouterr().err
    lines = [text for text in err.splitlines() if text.strip()]
    assert code == 2, (line, err)
    assert len(lines) == 1 and lines[0].startswith("clipdense") and ": error: " in lines[0], err
    assert "Traceback" not in err and "weights_only=False" not in err
    for part in expected:
        assert part.format(**files) in lines[0], (part, lines[0])
    assert not (tmp_path / "clipdense-pickle-ran").exists()


def test_the_table_covers_every_subcommand() -> None:
    from clipdense.cli.main import build_parser

    commands = set(build_parser()._subparsers._group_actions[0].choices)   # noqa: SLF001 - argparse has no API
    covered = {shlex.split(line)[0] for line, _ in CASES}
    assert len(CASES) >= 60 and commands <= covered
