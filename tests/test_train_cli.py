"""`clipdense train` bad inputs: each a one-line error and exit code 2."""
from __future__ import annotations

from pathlib import Path

import pytest

from clipdense.cli.main import main
from test_train_support import make_samples


def _write_csv(folder: Path, n: int) -> Path:
    rows = ["filepath,title"]
    for i, sample in enumerate(make_samples(n, 32)):
        sample.image.save(folder / f"{i}.png")
        rows.append(f"{i}.png,{sample.caption}")
    path = folder / "data.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("case,expected", [
    ("empty", "an empty folder"),
    ("columns", "expected columns 'filepath' and 'title'"),
    ("batch", "--batch-size 64 is larger than the training data (4 samples)"),
])
def test_bad_inputs_are_one_line_errors(tmp_path, capsys, case: str, expected: str) -> None:
    if case == "empty":
        data = tmp_path / "empty"
        data.mkdir()
    elif case == "columns":
        data = tmp_path / "bad.csv"
        data.write_text("path,caption\nx.png,a cat\n")
    else:
        data = _write_csv(tmp_path, 4)
    code = main(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--steps", "2", "--device", "cpu",
                 "--batch-size", "64"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and expected in err and "\n" not in err


def test_cli_trains_from_a_csv_and_resumes(tmp_path, capsys) -> None:
    data = _write_csv(tmp_path, 8)
    run = tmp_path / "run"
    args = ["--data", str(data), "--steps", "2", "--batch-size", "4", "--device", "cpu", "--num-workers", "0",
            "--checkpoint-every", "1", "--log-every", "1"]
    assert main(["train", "--out", str(run), *args]) == 0
    assert main(["train", "--resume", str(run), "--steps", "3", "--device", "cpu", "--num-workers", "0"]) == 0
    assert (run / "checkpoints" / "step-00000003" / "model.safetensors").is_file()
    assert "trained tiny-vit-t8 with clip for 3 steps" in capsys.readouterr().out


@pytest.mark.parametrize("objective, extra", [("siglip", []), ("silc", ["--objective-arg", "contrastive=sigmoid",
                                                                        "--objective-arg", "out_dim=64"])])
def test_a_sigmoid_loss_run_reloads_with_its_learnt_bias(tmp_path, objective: str, extra: list[str]) -> None:
    """A sigmoid-loss run adds a logit bias to the tiny CLIP: the run dir loads with it (it once failed on
    'unexpected keys logit_bias'), while the plain named model stays without one."""
    import clipdense as cd
    from clipdense.models.weights import read_state_dict

    data = _write_csv(tmp_path, 8)
    run = tmp_path / "run"
    assert main(["train", "--objective", objective, "--data", str(data), "--out", str(run), "--steps", "2",
                 "--batch-size", "4", "--device", "cpu", "--num-workers", "0", "--lr", "1e-2", *extra]) == 0
    loaded = cd.load_model(str(run), device="cpu")
    saved = read_state_dict(run / "checkpoints" / "step-00000002" / "model.safetensors")["logit_bias"]
    assert float(loaded.model.logit_bias) == float(saved) != -10.0
    assert getattr(cd.load_model("tiny-vit-t8", device="cpu").model, "logit_bias", None) is None
