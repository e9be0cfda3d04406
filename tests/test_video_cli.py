"""The video family from the command line and the evaluators: `data synth --video` flags, `classify VIDEO`,
`search DIR` over clips, bad videos in one line (exit 2), rank metrics and action accuracy on hand-computed cases, and
(slow) a world -> clip4clip / actionclip train -> eval round through the engine."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from clipdense.cli.main import main
from clipdense.data.video import write_video
from clipdense.evaluation.video import rank_metrics, topk_accuracy, twin_accuracy

pytest.importorskip("av")


def test_rank_metrics_by_hand() -> None:
    similarity = torch.tensor([[0.9, 0.1, 0.0],    # query 0: right item first
                               [0.8, 0.3, 0.5],    # query 1: right item third
                               [0.1, 0.7, 0.2]])   # query 2: right item second
    out = rank_metrics(similarity)
    assert out["R@1"] == pytest.approx(100 / 3) and out["R@5"] == 100.0
    assert out["MdR"] == 2.0 and out["MnR"] == pytest.approx(2.0)


def test_twin_accuracy_by_hand() -> None:
    similarity = torch.tensor([[0.9, 0.2, 0.0, 0.0],    # caption 0: own clip above twin 1
                               [0.5, 0.4, 0.0, 0.0],    # caption 1: twin 0 above own clip
                               [0.0, 0.0, 0.3, 0.1],    # caption 2: own above twin 3
                               [0.0, 0.0, 0.6, 0.7]])   # caption 3: own above twin 2
    out = twin_accuracy(similarity, [0, 1, 2, 3])
    assert out == {"text_to_video": 75.0, "video_to_text": 75.0, "pairs": 2}   # clip 0 prefers caption 0 (.9>.5) ...
    # clip 1: own .4 vs twin caption 0's .2 -> right; clip 2: .3 vs .6 -> wrong; clip 3: .7 vs .1 -> right
    assert twin_accuracy(similarity[1:, 1:], [1, 2, 3]) == {"text_to_video": 100.0, "video_to_text": 50.0,
                                                             "pairs": 1}   # clip 0 unreadable: only twins 2, 3


def test_topk_accuracy_by_hand() -> None:
    logits = torch.tensor([[0.1, 0.5, 0.4], [0.9, 0.0, 0.1]])
    labels = torch.tensor([2, 0])
    assert topk_accuracy(logits, labels, 1) == 50.0 and topk_accuracy(logits, labels, 2) == 100.0


def test_synth_video_flag_needs_video(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["data", "synth", "--out", str(tmp_path / "w"), "--video-clips", "4"]) == 2
    assert "--video-clips: only with --video" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["data", "synth", "--out", str(tmp_path / "w"), "--video", "--video-clips", "0"])
    assert exc.value.code == 2 and "--video-clips" in capsys.readouterr().err


def _one_line(capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


def test_bad_videos_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "notes.mp4").write_text("not a video")
    write_video(tmp_path / "still.mp4", np.zeros((1, 32, 32, 3), np.uint8))
    (tmp_path / "empty.avi").write_bytes(b"")
    model = ["--model", "tiny-vit-t8", "--device", "cpu"]
    for name, expected in (("notes.mp4", "not a readable video"), ("still.mp4", "single frame"),
                           ("empty.avi", "empty.avi")):
        assert main(["classify", str(tmp_path / name), "--classes", "grows,spins", *model]) == 2
        assert expected in _one_line(capsys)


def test_frame_count_flag_is_checked(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "msrvtt"
    root.mkdir()
    for frames in ("0", "-2"):
        assert main(["eval", "--model", "tiny-vit-t8", "--device", "cpu", "--tasks", "video-retrieval",
                     "--data", f"msrvtt:root={root},frames={frames}"]) == 2
        assert "frames" in _one_line(capsys)


def test_classify_and_search_clips_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from clipdense.data.world.video import VideoWorldConfig, retrieval_clip
    cfg = VideoWorldConfig(frames=4, size=64)
    for i in range(3):
        write_video(tmp_path / f"clip{i}.mp4", retrieval_clip(cfg, "val", i).frames)
    model = ["--model", "tiny-vit-t8", "--device", "cpu"]
    assert main(["classify", str(tmp_path / "clip0.mp4"), "--classes", "grows,spins", *model]) == 0
    out = capsys.readouterr().out
    assert "grows" in out and "spins" in out
    assert main(["search", str(tmp_path), "a red star moves left", "--top", "2", *model]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert len(lines) == 2 and all(".mp4" in line for line in lines)


@pytest.mark.slow   # writes a video world, trains two objectives a few steps, evaluates (~1 min on 2 cores)
def test_world_train_and_eval_round(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import json
    world = tmp_path / "w"
    assert main(["data", "synth", "--out", str(world), "--train", "2", "--val", "1", "--image-size", "32",
                 "--classify-train-per-class", "0", "--classify-val-per-class", "0", "--video",
                 "--video-clips", "16"]) == 0
    msrvtt = f"msrvtt:root={world / 'video' / 'msrvtt'},frames=4"
    kinetics = f"kinetics:root={world / 'video' / 'kinetics'},frames=4"
    common = ["--model", "tiny-vit-t8", "--device", "cpu", "--steps", "3", "--batch-size", "4", "--num-workers", "0",
              "--checkpoint-every", "3"]
    for objective, data, run in (("clip4clip", msrvtt, "c4c"), ("actionclip", kinetics, "act")):
        assert main(["train", "--objective", objective, "--data", data, "--out", str(tmp_path / run), *common,
                     "--objective-arg", "layers=1"]) == 0
    model = ["--model", "tiny-vit-t8", "--device", "cpu"]
    assert main(["eval", *model, "--data", msrvtt, "--tasks", "video-retrieval", "--head", str(tmp_path / "c4c"),
                 "--out", str(tmp_path / "ret.json")]) == 0
    ret = json.loads((tmp_path / "ret.json").read_text())["tasks"]["video-retrieval"]
    assert set(ret["text_to_video"]) == {"R@1", "R@5", "R@10", "MdR", "MnR"} and ret["clips"] == 4
    assert main(["eval", *model, "--data", kinetics, "--tasks", "action", "--head", str(tmp_path / "act"),
                 "--out", str(tmp_path / "act.json")]) == 0
    act = json.loads((tmp_path / "act.json").read_text())["tasks"]["action"]
    assert act["classes"] == 12 and act["zero_shot"]["classes"] == 3 and act["zero_shot"]["chance"] == \
        pytest.approx(100 / 3)
