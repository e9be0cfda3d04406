"""The audio family from the command line and the evaluators: `data synth --audio` flags, `classify SOUND.wav`,
`eval --tasks audio-zeroshot,audio-retrieval`; fold accuracy and cross-modal recall on hand-computed cases."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from clipdense.cli.main import main
from clipdense.data.audio import write_wav
from clipdense.evaluation.audio import cross_recall, fold_accuracy


def test_fold_accuracy_is_the_mean_of_per_fold_accuracies() -> None:
    logits = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1, 1, 0, 0])
    folds = torch.tensor([1, 1, 2, 2, 2])
    out = fold_accuracy(logits, labels, folds)
    assert out["per_fold"] == {1: 1.0, 2: pytest.approx(1 / 3)}
    assert out["top1_mean_over_folds"] == pytest.approx((1 + 1 / 3) / 2) and out["top1_all"] == pytest.approx(0.6)


def test_cross_recall_by_hand() -> None:
    a = torch.eye(3)
    b = torch.tensor([[0.9, 0.1, 0.0], [0.0, 0.2, 0.8], [0.3, 0.7, 0.0]])   # b1 looks like a2, b2 like a1
    out = cross_recall(a, b, ks=(1, 2))   # similarity[i, j] = b[j, i]
    # a0 -> b0 (0.9) hit; a1 -> b2 (0.7) then b1 (0.2): miss, hit at 2; a2 -> b1 (0.8) then b0/b2 (0): miss at 2
    assert out["image_to_text"] == {1: pytest.approx(1 / 3), 2: pytest.approx(2 / 3)}
    # b0 -> a0 hit; b1 -> a2 (0.8) then a1 (0.2): hit at 2; b2 -> a1 (0.7) then a0 (0.3): miss at 2
    assert out["text_to_image"] == {1: pytest.approx(1 / 3), 2: pytest.approx(2 / 3)}


def test_synth_audio_flags_are_bounded_and_need_audio(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["data", "synth", "--out", str(tmp_path / "w"), "--audio", "--audio-snr", "99"])
    assert exc.value.code == 2 and "--audio-snr: expected a ratio in dB >= -20.0 and <= 60.0, got 99" in \
        capsys.readouterr().err
    assert main(["data", "synth", "--out", str(tmp_path / "w"), "--audio-per-class", "2"]) == 2
    assert "--audio-snr / --audio-per-class / --audio-speech: only with --audio" in capsys.readouterr().err


@pytest.mark.slow   # writes a world and its sounds (~6 s on a shared 2-core machine)
def test_synth_audio_writes_the_sounding_world(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["data", "synth", "--out", str(tmp_path / "w"), "--train", "2", "--val", "1", "--image-size", "32",
                 "--classify-train-per-class", "0", "--classify-val-per-class", "0", "--colours", "red,blue", "--shapes",
                 "circle,star", "--audio", "--audio-per-class",
                 "1", "--audio-snr", "5"]) == 0
    assert "wrote 2 train + 1 val scene sounds" in capsys.readouterr().out
    assert (tmp_path / "w" / "audio" / "sounds.yaml").read_text().count("snr_db: 5.0") == 1
    assert len(list((tmp_path / "w" / "audio" / "esc50" / "audio").glob("*.wav"))) > 0


def test_classify_a_sound_file_with_the_shipped_tower(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from clipdense.tasks.audio import AUDIO_WEIGHTS_DIR
    if not (AUDIO_WEIGHTS_DIR / "tiny-vit-t8--synthworld.safetensors").is_file():
        pytest.skip("no shipped audio tower")
    t = np.arange(32000) / 16000
    write_wav(tmp_path / "a.wav", 0.5 * np.sin(2 * np.pi * 261.6 * t) * np.sin(np.pi * t / 2) ** 2, 16000)
    args = ["classify", str(tmp_path / "a.wav"), "--classes", "red circle,blue star,green heart", "--model",
            "tiny-vit-t8", "--pretrained", "synthworld", "--device", "cpu", "--json"]
    assert main(args) == 0
    import json
    probs = json.loads(capsys.readouterr().out)
    assert set(probs) == {"red circle", "blue star", "green heart"} and sum(probs.values()) == pytest.approx(1, 1e-4)
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    assert main([*args[:1], str(tmp_path / "bad.wav"), *args[2:]]) == 2
    err = capsys.readouterr().err.strip()
    assert "bad.wav: not a readable sound file" in err and "\n" not in err
    write_wav(tmp_path / "quiet.wav", np.zeros(16000), 16000)
    assert main([*args[:1], str(tmp_path / "quiet.wav"), *args[2:]]) == 2
    assert "quiet.wav: silent sound" in capsys.readouterr().err
    assert main([*args[:1], str(tmp_path / "a.wav"), *args[2:4], "--model", "tiny-vit-t8", "--device", "cpu"]) == 2
    assert "no audio tower for tiny-vit-t8 (random init)" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_audio_writes_its_report(tmp_path: Path) -> None:
    from clipdense.demo.families import family_demo
    from clipdense.tasks.audio import AUDIO_WEIGHTS_DIR
    if not (AUDIO_WEIGHTS_DIR / "tiny-vit-t8--synthworld.safetensors").is_file():
        pytest.skip("no shipped audio tower")
    said: list[str] = []
    report = family_demo("audio")(tmp_path, said.append)
    text = report.read_text()
    assert "top-1, mean of folds" in text and text.count("![](sound-") == 4
    assert all((tmp_path / f"sound-{i:06d}.png").is_file() for i in range(4))
    assert any(line.startswith("zero-shot") for line in said)


def test_classify_with_a_trained_audio_tower_and_the_flag_refused_for_images(tmp_path: Path,
                                                                             capsys: pytest.CaptureFixture) -> None:
    import clipdense as cd
    from clipdense.heads import save_head
    from clipdense.heads.audio import AudioHead
    from clipdense.models.audio import build_audio_tower
    bundle = cd.load_model("tiny-vit-t8", device="cpu")
    save_head(AudioHead(build_audio_tower("tiny", embed_dim=bundle.model.text_projection.shape[1], seed=1)),
              tmp_path / "tower.safetensors", bundle)
    t = np.arange(16000) / 16000
    write_wav(tmp_path / "a.wav", 0.3 * np.sin(2 * np.pi * 440 * t), 16000)
    base = ["--classes", "x,y", "--model", "tiny-vit-t8", "--device", "cpu", "--json"]
    assert main(["classify", str(tmp_path / "a.wav"), "--audio-tower", str(tmp_path / "tower.safetensors"), *base]) == 0
    assert set(__import__("json").loads(capsys.readouterr().out)) == {"x", "y"}
    from PIL import Image
    Image.new("RGB", (8, 8)).save(tmp_path / "p.png")
    assert main(["classify", str(tmp_path / "p.png"), "--audio-tower", str(tmp_path / "tower.safetensors"), *base]) == 2
    assert "--audio-tower: classifies sounds; " in capsys.readouterr().err
