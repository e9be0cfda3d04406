"""Issue 16: no run can clobber another (run-folder lock, stale locks, --resume into another run, data synth over a
world), a killed run's leftovers never stop a resume, file modes follow the umask, non-finite messages say where
to continue, and a model with random weights says so."""
from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from tqdm import tqdm

from clipdense.cli.main import main
from clipdense.errors import ClipDenseError, DataError
from clipdense.data.streams import InMemorySamples
from clipdense.train.lock import LOCK_FILE, RunLock
from clipdense.train.run import run_training
from test_train_support import make_samples, tiny_config


@pytest.fixture()
def csv_data(tmp_path) -> Path:
    rows = ["filepath,title"]
    for i, sample in enumerate(make_samples(8, 32)):
        sample.image.save(tmp_path / f"{i}.png")
        rows.append(f"{i}.png,{sample.caption}")
    (tmp_path / "data.csv").write_text("\n".join(rows) + "\n")
    return tmp_path / "data.csv"


def _train(data: Path, run: Path, *extra: str) -> list[str]:
    return ["train", "--data", str(data), "--out", str(run), "--steps", "2", "--batch-size", "4", "--device", "cpu",
            "--num-workers", "0", "--checkpoint-every", "1", "--log-every", "1", "--eval-every", "0", *extra]


def _holder(run: Path) -> subprocess.Popen:
    """Another process holding the run folder's lock (as a running `clipdense train` does) until killed."""
    code = ("import sys, time\nfrom clipdense.train.lock import RunLock\n"
            f"RunLock({str(run)!r}).acquire()\nprint('locked', flush=True)\ntime.sleep(600)\n")
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "locked"
    return process


@pytest.mark.slow   # a holder process
def test_a_second_run_into_a_locked_folder_fails_at_once_and_a_killed_holder_is_taken_over(
        tmp_path, csv_data, capsys) -> None:
    run = tmp_path / "run"
    holder = _holder(run)
    try:
        start = time.perf_counter()
        assert main(_train(csv_data, run)) == 2
        err = capsys.readouterr().err.strip()
        assert time.perf_counter() - start < 5 and len(err.splitlines()) == 1
        assert f"--out {run}: another run is writing into this folder (pid {holder.pid}" in err
        assert not (run / "config.yaml").exists() and not (run / "metrics.jsonl").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert main(_train(csv_data, run)) == 0            # the dead holder's lock is stale: taken over
    err = capsys.readouterr().err
    assert f"took over the lock of a run that ended without releasing it (pid {holder.pid}" in err
    assert (run / "checkpoints" / "step-00000002" / "model.safetensors").is_file()
    assert (run / LOCK_FILE).read_text() == ""          # a clean end releases it (no stale record)


def test_two_resumes_of_one_run_cannot_run_at_once(tmp_path, csv_data, capsys) -> None:
    run = tmp_path / "run"
    assert main(_train(csv_data, run)) == 0
    with RunLock(run):
        assert main(["train", "--resume", str(run), "--steps", "3", "--device", "cpu", "--num-workers", "0"]) == 2
    assert f"--resume {run}: another run is writing into this folder (pid {os.getpid()}" in capsys.readouterr().err
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2]


def test_resume_into_a_folder_holding_another_run_leaves_it_untouched(tmp_path, csv_data, capsys) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    assert main(_train(csv_data, first)) == 0
    assert main(_train(csv_data, second, "--seed", "1")) == 0
    before = {p.relative_to(second): p.read_bytes() for p in second.rglob("*") if p.is_file()}
    assert main(["train", "--resume", str(first), "--out", str(second), "--steps", "3", "--device", "cpu",
                 "--num-workers", "0"]) == 2
    assert f"--out {second}: already holds a run" in capsys.readouterr().err
    after = {p.relative_to(second): p.read_bytes() for p in second.rglob("*") if p.is_file()}
    assert after == before


def test_resume_survives_a_half_written_metrics_line(tmp_path, csv_data) -> None:
    run = tmp_path / "run"
    assert main(_train(csv_data, run)) == 0
    with open(run / "metrics.jsonl", "a") as handle:
        handle.write('{"step": 3, "loss": 0.12')           # killed while appending
    assert main(["train", "--resume", str(run), "--steps", "3", "--device", "cpu", "--num-workers", "0"]) == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3]


def test_a_poisoned_training_state_is_refused_in_one_line(tmp_path, csv_data, capsys) -> None:
    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'ran'}",))

    run = tmp_path / "run"
    assert main(_train(csv_data, run)) == 0
    capsys.readouterr()
    torch.save({"step": 2, "optimizer": Payload()}, run / "checkpoints" / "step-00000002" / "state.pt")
    assert main(["train", "--resume", str(run), "--steps", "3", "--device", "cpu", "--num-workers", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "state.pt: could not read training state: refused" in err
    assert "weights_only=False" not in err and not (tmp_path / "ran").exists()


def test_a_poisoned_teacher_cache_is_refused_in_one_line(tmp_path, csv_data, capsys) -> None:
    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'ran'}",))

    cache, run = tmp_path / "cache", tmp_path / "run"
    args = ["distill", "--data", str(csv_data), "--model", "tiny-vit-t8", "--pretrained", "synthworld", "--steps", "1",
            "--batch-size", "4", "--device", "cpu", "--num-workers", "0", "--max-regions", "2", "--student-size", "64",
            "--teacher-cache", str(cache)]
    assert main([*args, "--out", str(run)]) == 0
    capsys.readouterr()
    (stored,) = cache.glob("teacher-*.pt")
    torch.save({"keys": Payload(), "values": torch.zeros(1, 2)}, stored)
    assert main([*args, "--out", str(tmp_path / "run2")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(stored) in err and "refused" in err and "delete it to rebuild" in err
    assert "weights_only=False" not in err and not (tmp_path / "ran").exists()


def test_run_files_and_folders_follow_the_umask(tmp_path, csv_data) -> None:
    run = tmp_path / "run"
    old = os.umask(0o022)
    try:
        assert main(_train(csv_data, run)) == 0
    finally:
        os.umask(old)
    step = run / "checkpoints" / "step-00000002"
    for path in (run / "config.yaml", run / "metrics.jsonl", run / "metrics.csv", step / "model.safetensors",
                 step / "state.pt"):
        assert path.stat().st_mode & 0o777 == 0o644, path
    assert step.stat().st_mode & 0o777 == 0o755


def test_data_synth_replaces_a_world_only_when_asked_and_leaves_nothing_stale(tmp_path, capsys) -> None:
    world = tmp_path / "world"
    base = ["data", "synth", "--out", str(world), "--image-size", "32", "--classify-train-per-class", "0",
            "--classify-val-per-class", "0"]
    assert main([*base, "--train", "6", "--val", "2"]) == 0
    assert main([*base, "--train", "2", "--val", "1"]) == 2
    assert "already holds a world" in capsys.readouterr().err
    assert len(list((world / "train" / "images").iterdir())) == 6
    (world / "notes.txt").write_text("mine")
    assert main([*base, "--train", "2", "--val", "1", "--overwrite"]) == 0
    assert len(list((world / "train" / "images").iterdir())) == 2
    assert len(list((world / "semseg" / "train").iterdir())) == 2
    assert len(list((world / "val" / "images").iterdir())) == 1
    assert (world / "notes.txt").read_text() == "mine"


def _poison(step: int, trainer) -> None:
    """From step 2 on the weights are NaN, so every later loss is non-finite."""
    if step >= 1:
        with torch.no_grad():
            trainer.objective.model.visual.proj.fill_(float("nan"))


def test_nonfinite_with_no_checkpoint_says_start_again_and_closes_the_bar(tmp_path) -> None:
    with pytest.raises(ClipDenseError) as error:
        run_training(tiny_config(tmp_path / "run", steps=6, checkpoint_every=5, log_every=5),
                     source=InMemorySamples(make_samples()), hooks=[_poison])
    message = str(error.value)
    assert "at step 2" in message and "no checkpoint was written yet: lower --lr and start again" in message
    assert "--resume" not in message and "--on-nonfinite skip" in message
    del error
    gc.collect()
    assert not [bar for bar in list(tqdm._instances) if not bar.disable]   # closed, cannot redraw over the message


def _nan_losses(step: int, trainer) -> None:
    """From step 2 on every loss is NaN (the weights stay finite: policy 'skip' never applies those steps)."""
    if step == 1:
        forward = trainer.objective.forward
        trainer.objective.forward = lambda batch: {**forward(batch), "loss": forward(batch)["loss"] * float("nan")}


def test_nonfinite_skip_that_diverges_names_the_last_good_checkpoint(tmp_path) -> None:
    run = tmp_path / "run"
    with pytest.raises(ClipDenseError) as error:
        run_training(tiny_config(run, steps=14, checkpoint_every=4, log_every=1, on_nonfinite="skip",
                                 batch_size=4), source=InMemorySamples(make_samples()), hooks=[_nan_losses])
    message = str(error.value)
    assert "11 steps skipped" in message and "training diverged" in message
    assert f"last good checkpoint {run / 'checkpoints' / 'step-00000008'}: lower --lr and continue it with " \
           f"--resume {run}" in message


def test_distill_has_the_nonfinite_flag_its_message_names(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["distill", "--help"])
    assert "--on-nonfinite {stop,skip}" in capsys.readouterr().out


def test_segment_and_classify_default_to_the_shipped_weights_and_random_weights_say_so(tmp_path, capsys,
                                                                                       monkeypatch) -> None:
    import clipdense.models as models

    Image.new("RGB", (20, 12), (200, 30, 30)).save(tmp_path / "red.png")
    loaded = []
    real = models.load_model
    monkeypatch.setattr(models, "load_model", lambda *a, **k: loaded.append(a[:2]) or real(*a, **k))
    assert main(["classify", str(tmp_path / "red.png"), "--classes", "red,blue", "--device", "cpu"]) == 0
    assert main(["segment", str(tmp_path / "red.png"), "--classes", "red,blue", "--device", "cpu",
                 "--out", str(tmp_path / "o.png")]) == 0
    assert loaded == [("tiny-vit-t8", "synthworld")] * 2 and capsys.readouterr().err == ""
    assert main(["classify", str(tmp_path / "red.png"), "--classes", "red,blue", "--device", "cpu",
                 "--model", "tiny-vit-s8"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "warning: tiny-vit-s8 has random weights" in err[0]


def test_training_from_random_weights_says_so_once(tmp_path, csv_data, capsys) -> None:
    assert main(_train(csv_data, tmp_path / "run", "--model", "tiny-vit-t8")) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "random weights" in line]
    assert len(warnings) == 1


def test_extreme_aspect_ratios_are_bounded_before_inference(tmp_path) -> None:
    from clipdense.tasks.images import MAX_ASPECT, bounded_size, dense_input

    assert bounded_size(1, 2000, 64) == (64, int(64 * MAX_ASPECT))
    assert bounded_size(2000, 1, 64) == (int(64 * MAX_ASPECT), 64)
    assert bounded_size(640, 480, 64) == (85, 64)                       # ordinary shapes as torchvision resizes
    model = torch.nn.Module()
    model.visual = torch.nn.Module()
    model.visual.preprocess_cfg = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}
    tensor = dense_input(model, Image.new("RGB", (1, 2000)), 64)
    assert tuple(tensor.shape) == (1, 3, int(64 * MAX_ASPECT), 64)
    with pytest.raises(ClipDenseError, match="short_side 0"):
        bounded_size(10, 10, 0)


def test_a_folder_given_as_an_image_says_so(tmp_path) -> None:
    from clipdense.data.images import open_image

    with pytest.raises(DataError, match="is a folder, expected an image file"):
        open_image(tmp_path)


@pytest.mark.slow
def test_two_cli_trainings_started_together_into_one_folder(tmp_path, csv_data) -> None:
    """The issue's report: two `clipdense train` processes 0.5 s apart into one --out. One runs, one is refused."""
    run = tmp_path / "run"
    argv = [sys.executable, "-m", "clipdense.cli.main", *_train(csv_data, run, "--steps", "150", "--checkpoint-every", "50")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(argv, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    time.sleep(0.5)
    second = subprocess.Popen(argv, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    results = [(p.wait(timeout=300), p.stderr.read()) for p in (first, second)]
    assert sorted(code for code, _ in results) == [0, 2], results
    (refused,) = [err for code, err in results if code == 2]
    assert "another run is writing into this folder" in refused and "Traceback" not in refused
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == list(range(1, 151))


def test_segment_refuses_sizes_and_thresholds_that_would_silently_change_its_answer(tiny_bundle) -> None:
    import clipdense as cd

    image = Image.new("RGB", (16, 16))
    for kwargs, words in (({"short_side": 0}, "short_side 0"), ({"window": -8}, "window -8"),
                          ({"background_threshold": 5.0}, "background_threshold 5.0")):
        with pytest.raises(ClipDenseError, match=words):
            cd.segment(tiny_bundle, image, ["a", "b"], **kwargs)
