"""Batch entry points equal the single-image calls exactly; folder runs resume without redoing finished images and
write what an uninterrupted run writes; the folder flags' one-line errors."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import clipdense as cd
from clipdense.cli.main import main
from clipdense.errors import ConfigError
from clipdense.tasks.batch import classify_batch, detect_batch, segment_batch
from clipdense.tasks.batching import class_lists, list_images, size_groups
from clipdense.tasks.folder import JOURNAL, FolderJob, read_journal, run_folder
from clipdense.tasks.folder_tasks import ClassifyFolder, SegmentFolder, SegmentSettings

CLASSES = ["red circle", "blue square", "green star"]


def _picture(seed: int, height: int, width: int) -> Image.Image:
    return Image.fromarray((np.random.RandomState(seed).rand(height, width, 3) * 255).astype("uint8"))


def _folder(root: Path) -> Path:
    """Six readable images of three sizes (one in a sub-folder), a broken one and a text file."""
    (root / "sub").mkdir(parents=True)
    for i, (h, w) in enumerate([(40, 40), (40, 56), (40, 40), (48, 48), (40, 56)]):
        _picture(i, h, w).save(root / f"im{i}.png")
    _picture(9, 40, 40).save(root / "sub" / "deep.jpg")
    (root / "broken.png").write_bytes(b"not a png")
    (root / "notes.txt").write_text("not an image")
    return root


def test_segment_batch_equals_single_calls(tiny_bundle):
    images = [_picture(0, 40, 60), _picture(1, 80, 120), _picture(2, 50, 50)]   # two share an input size
    for kwargs in ({}, {"window": 24, "background_threshold": 0.5}):
        singles = [cd.segment(tiny_bundle, image, CLASSES, templates="plain", **kwargs) for image in images]
        batched = segment_batch(tiny_bundle, images, CLASSES, templates="plain", **kwargs)
        assert len(batched) == 3 and all(torch.equal(a, b) for a, b in zip(singles, batched))
    per_image = [["cat", "dog"], CLASSES, ["cat", "dog"]]
    batched = segment_batch(tiny_bundle, images, per_image, templates="plain", batch_size=2)
    for image, names, labels in zip(images, per_image, batched):
        assert torch.equal(labels, cd.segment(tiny_bundle, image, names, templates="plain"))


def test_classify_batch_equals_single_calls_for_lists_and_tensors(tiny_bundle):
    images = [_picture(i, 48, 64) for i in range(3)]
    singles = [cd.classify(tiny_bundle, image, CLASSES, templates="plain") for image in images]
    batched = classify_batch(tiny_bundle, images, CLASSES, templates="plain")
    # equal up to float32 rounding: a batched matmul may sum in another order than one image's (CPU-dependent;
    # this machine's Xeon differs in the 7th digit, the earlier EPYC did not)
    assert all(torch.allclose(a, b, rtol=0, atol=1e-6) for a, b in zip(singles, batched))
    tensor = torch.stack([tiny_bundle.preprocess(image) for image in images])   # a (B, 3, H, W) batch
    from_tensor = classify_batch(tiny_bundle, tensor, CLASSES, templates="plain")
    assert all(torch.allclose(a, cd.classify(tiny_bundle, t, CLASSES, templates="plain"), rtol=0, atol=1e-6)
               for a, t in zip(from_tensor, tensor))


def test_detect_batch_equals_single_calls():
    from test_detection_heads import SMALL, vit_clip

    from clipdense.heads.detection import DetectorConfig, FViTDetector

    bundle = vit_clip(3, 8, 32)
    detector = FViTDetector(bundle, DetectorConfig(image_size=64, **SMALL), ["cat", "dog"]).eval()
    torch.manual_seed(0)
    images = [torch.rand(3, 40, 48), torch.rand(3, 56, 40), torch.rand(3, 40, 48)]
    batched = detect_batch(bundle, images, ["cat", "dog"], head=detector)
    for image, found in zip(images, batched):
        single = cd.detect(bundle, image, ["cat", "dog"], head=detector)
        assert torch.equal(single.boxes, found.boxes) and torch.equal(single.scores, found.scores)
        assert torch.equal(single.labels, found.labels)


def test_batch_inputs_and_class_lists_refused_in_one_line(tiny_bundle):
    assert class_lists(["a", "b"], 2, "t") == [("a", "b"), ("a", "b")]
    with pytest.raises(ConfigError, match=r"t: 1 class lists for 2 images \(one list per image\)"):
        class_lists([["a"]], 2, "t")
    with pytest.raises(ConfigError, match="mixes names and lists"):
        class_lists(["a", ["b"]], 2, "t")
    with pytest.raises(ConfigError, match="class list of image 1 must be a non-empty"):
        class_lists([["a"], []], 2, "t")
    with pytest.raises(ConfigError, match=r"expected a \(B, 3, H, W\) or \(3, H, W\) tensor, got shape \(2, 1, 8, 8\)"):
        segment_batch(tiny_bundle, torch.zeros(2, 1, 8, 8), ["a"])
    with pytest.raises(ConfigError, match="batch_size 0: expected a count >= 1"):
        size_groups([1, 2], 0)
    assert size_groups(["x", "y", "x", "x"], 2) == [[0, 2], [3], [1]]


def test_list_images_sorted_default_suffixes_glob_and_recursion(tmp_path):
    root = _folder(tmp_path / "in")
    names = [p.relative_to(root).as_posix() for p in list_images(root)]
    assert names == ["broken.png", "im0.png", "im1.png", "im2.png", "im3.png", "im4.png"]
    assert [p.name for p in list_images(root, "*.jpg", recursive=True)] == ["deep.jpg"]
    assert "notes.txt" in [p.name for p in list_images(root, "*")]   # a pattern takes what it matches


class _Stop(Exception):
    pass


def test_folder_run_killed_midway_resumes_to_the_same_outputs(tiny_bundle, tmp_path):
    root = _folder(tmp_path / "in")
    settings = SegmentSettings(CLASSES, templates="plain", background_threshold=0.4)
    whole = run_folder(FolderJob(root, tmp_path / "whole", recursive=True, batch_size=2, progress=False),
                       SegmentFolder(tiny_bundle, settings, batch_size=2))
    assert (whole.found, whole.processed, whole.skips.count) == (7, 6, 1)

    seen: list[str] = []

    def stop_after_three(relative: str) -> None:
        seen.append(relative)
        if len(seen) == 3:
            raise _Stop

    job = FolderJob(root, tmp_path / "cut", recursive=True, batch_size=2, progress=False)
    with pytest.raises(_Stop):
        run_folder(job, SegmentFolder(tiny_bundle, settings, batch_size=2), on_image=stop_after_three)
    assert len(read_journal(tmp_path / "cut")) == 3
    task = SegmentFolder(tiny_bundle, settings, batch_size=2)
    ran: list[int] = []
    original_run = task.run
    task.run = lambda images: ran.append(len(images)) or original_run(images)   # count what the resume runs
    resumed = run_folder(job, task)
    assert (resumed.resumed, resumed.processed, sum(ran)) == (3, 3, 3)   # finished images are not redone
    files = sorted(p.relative_to(tmp_path / "whole").as_posix() for p in (tmp_path / "whole").rglob("*.png"))
    assert files == ["im0.png", "im1.png", "im2.png", "im3.png", "im4.png", "sub/deep.png"]
    for name in files:
        assert np.array_equal(np.asarray(Image.open(tmp_path / "whole" / name)),
                              np.asarray(Image.open(tmp_path / "cut" / name)))
    expected = cd.segment(tiny_bundle, root / "im1.png", CLASSES, templates="plain", background_threshold=0.4)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "whole" / "im1.png")),
                          np.where(expected.numpy() < 0, 255, expected.numpy()))
    assert (tmp_path / "cut" / "classes.txt").read_text().splitlines() == CLASSES
    assert (tmp_path / "cut" / "skipped_files.tsv").read_text().startswith(str(root / "broken.png"))


def test_classify_folder_csv_same_after_resume_and_matches_classify(tiny_bundle, tmp_path):
    root = _folder(tmp_path / "in")
    whole = run_folder(FolderJob(root, tmp_path / "whole", progress=False),
                       ClassifyFolder(tiny_bundle, CLASSES, "plain", top=2))
    assert whole.processed == 5
    journal = tmp_path / "cut"
    with pytest.raises(_Stop):
        run_folder(FolderJob(root, journal, progress=False), ClassifyFolder(tiny_bundle, CLASSES, "plain", top=2),
                   on_image=lambda rel: (_ for _ in ()).throw(_Stop()))
    with open(journal / JOURNAL, "ab") as handle:   # a kill in the middle of a journal line ...
        handle.write(b'{"file": "im4.p')
    (journal / ".predictions.csv.x1.tmp").write_text("half")   # ... or of an atomic write
    run_folder(FolderJob(root, journal, progress=False), ClassifyFolder(tiny_bundle, CLASSES, "plain", top=2))
    assert len(read_journal(journal)) == 5 and not (journal / ".predictions.csv.x1.tmp").exists()
    text = (tmp_path / "whole" / "predictions.csv").read_text()
    assert (journal / "predictions.csv").read_text() == text
    rows = list(csv.DictReader(text.splitlines()))
    assert [r["file"] for r in rows] == ["im0.png", "im1.png", "im2.png", "im3.png", "im4.png"]
    probs = cd.classify(tiny_bundle, root / "im3.png", CLASSES, templates="plain")
    assert rows[3]["label_1"] == CLASSES[int(probs.argmax())]
    assert float(rows[3]["probability_1"]) == pytest.approx(float(probs.max()), abs=1e-6)


def test_folder_resume_with_other_settings_refused(tiny_bundle, tmp_path):
    root = _folder(tmp_path / "in")
    run_folder(FolderJob(root, tmp_path / "out", progress=False), ClassifyFolder(tiny_bundle, CLASSES, "plain"))
    with pytest.raises(ConfigError, match=r"holds a folder run with other classes; resume with the same"):
        run_folder(FolderJob(root, tmp_path / "out", progress=False), ClassifyFolder(tiny_bundle, ["a", "b", "c"], "plain"))
    with pytest.raises(ConfigError, match="holds a folder run with task classify"):
        run_folder(FolderJob(root, tmp_path / "out", progress=False),
                   SegmentFolder(tiny_bundle, SegmentSettings(CLASSES)))


@pytest.mark.parametrize("argv, message", [
    (["segment", "IMG", "--classes", "a", "--glob", "*.png"], "--glob: only with a folder of images, and"),
    (["segment", "DIR", "--classes", "a"], "--out: a folder run needs --out OUTDIR"),
    (["classify", "IMG", "--classes", "a", "--out", "x"], "--out: only with a folder of images"),
    (["classify", "IMG", "--classes", "a", "--recursive"], "--recursive: only with a folder of images"),
    (["segment", "DIR", "--classes", "a", "--out", "IMG"], "is a file, expected a folder for a folder run"),
    (["detect", "IMG", "IMG", "--head", "h", "--glob", "*"], "--glob / --recursive / --batch-size: only with one "
                                                            "folder of images"),
])
def test_folder_flags_one_line_errors(tmp_path, capsys, argv, message):
    image = tmp_path / "p.png"
    _picture(0, 16, 16).save(image)
    (tmp_path / "d").mkdir()
    argv = [str(image) if a == "IMG" else str(tmp_path / "d") if a == "DIR" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


def test_batch_size_flag_bounded(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["segment", "d", "--classes", "a", "--batch-size", "0"])
    assert exit_info.value.code == 2 and "--batch-size: expected a count >= 1, got 0" in capsys.readouterr().err


def test_cli_folder_runs_write_outputs_and_resume(tmp_path, capsys):
    root = _folder(tmp_path / "in")
    argv = ["segment", str(root), "--classes", "a,b", "--templates", "plain", "--out", str(tmp_path / "seg"),
            "--recursive", "--no-progress"]
    assert main(argv) == 0
    assert "7 images: 0 done before, 6 now" in capsys.readouterr().out
    assert main(argv) == 0
    assert "7 images: 6 done before, 0 now" in capsys.readouterr().out
    assert main(["classify", str(root), "--classes", "a,b", "--templates", "plain", "--out", str(tmp_path / "cls"),
                 "--no-progress"]) == 0
    assert len((tmp_path / "cls" / "predictions.csv").read_text().splitlines()) == 6
    manifest = json.loads((tmp_path / "cls" / "folder-run.json").read_text())
    assert manifest["task"] == "classify" and manifest["settings"]["classes"] == ["a", "b"]


def test_detect_folder_writes_coco_results_of_detect(tmp_path):
    from test_detection_heads import SMALL, vit_clip

    from clipdense.heads.detection import DetectorConfig, FViTDetector
    from clipdense.tasks.folder_tasks import DetectFolder

    bundle = vit_clip(3, 8, 32)
    detector = FViTDetector(bundle, DetectorConfig(image_size=64, **SMALL), ["cat", "dog"]).eval()
    root = _folder(tmp_path / "in")
    summary = run_folder(FolderJob(root, tmp_path / "out", progress=False),
                         DetectFolder(bundle, detector, "det", min_score=0.0))
    assert (summary.processed, summary.skips.count) == (5, 1)
    results = json.loads((tmp_path / "out" / "detections.json").read_text())
    expected = []
    for index, name in enumerate(["im0.png", "im1.png", "im2.png", "im3.png", "im4.png"]):
        found = cd.detect(bundle, root / name, head=detector)
        expected += [{**r, "file_name": name, "category_name": ["cat", "dog"][r["category_id"] - 1]}
                     for r in found.to_coco(index + 1)]
    assert results == expected and len(results) > 0


@pytest.mark.slow
def test_cli_folder_run_killed_with_sigkill_resumes_to_the_same_outputs(tmp_path):
    """A real kill (SIGKILL, no clean-up) in the middle of `clipdense segment DIR`: the restarted run does only the
    rest, and every label PNG equals the uninterrupted run's."""
    import os
    import signal
    import subprocess
    import sys
    import time

    root = tmp_path / "in"
    root.mkdir()
    for i in range(120):
        _picture(i, 96, 96 + 8 * (i % 3)).save(root / f"im{i:03d}.png")

    def command(out: Path) -> list[str]:
        return [sys.executable, "-m", "clipdense.cli.main", "segment", str(root), "--classes", "a,b,c",
                "--templates", "plain", "--window", "32", "--out", str(out), "--batch-size", "1", "--no-progress"]

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(command(tmp_path / "whole"), check=True, env=env, capture_output=True, timeout=600)
    proc = subprocess.Popen(command(tmp_path / "cut"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = tmp_path / "cut" / JOURNAL
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and (not journal.exists() or len(journal.read_bytes().splitlines()) < 10):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(read_journal(tmp_path / "cut"))
    assert 10 <= done_before < 120, done_before
    rerun = subprocess.run(command(tmp_path / "cut"), check=True, env=env, capture_output=True, text=True, timeout=600)
    assert f"120 images: {done_before} done before, {120 - done_before} now" in rerun.stdout
    for i in range(120):
        name = f"im{i:03d}.png"
        assert np.array_equal(np.asarray(Image.open(tmp_path / "whole" / name)),
                              np.asarray(Image.open(tmp_path / "cut" / name))), name
    assert not list((tmp_path / "cut").glob(".*.tmp"))   # no half-written file left behind
