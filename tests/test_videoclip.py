"""VideoCLIP (objective ``videoclip``): the overlapping sub-clip sampler, the symmetric InfoNCE on a hand-computed
2x2 case, the retrieval-augmented batch's nearest neighbours on hand-made embeddings, a bad option in one line
(exit 2), and (slow) a handful of world clips overfitted through ``train`` then ``eval --tasks video-retrieval``."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch

from clipdense.cli.main import main
from clipdense.objectives.clip import contrastive_loss
from clipdense.objectives.videoclip import (OverlapTransform, nearest_batch, overlap_window, window_indices)
from resume_toy import whole_and_resumed

pytest.importorskip("av")


@pytest.mark.parametrize("frames,fraction,shortest", [(8, 0.5, 4), (7, 0.5, 4), (8, 1.0, 8), (4, 0.3, 2)])
def test_overlap_window_is_contiguous_long_enough_and_inside(frames: int, fraction: float, shortest: int) -> None:
    seen = set()
    for seed in range(200):
        start, length = overlap_window(frames, torch.Generator().manual_seed(seed), fraction)
        assert shortest <= length <= frames and 0 <= start and start + length <= frames
        seen.add((start, length))
        idx = window_indices(start, length, frames)
        assert idx[0] == start and idx[-1] == start + length - 1       # spans the window, in order
        assert bool((idx.diff() >= 0).all()) and bool((idx.diff() <= 1).all())   # contiguous frames, none skipped
    # every admissible window turns up: lengths shortest..frames, each at every start
    assert seen == {(s, n) for n in range(shortest, frames + 1) for s in range(frames - n + 1)}


def test_overlap_transform_pairs_a_sub_clip_with_its_caption() -> None:
    from clipdense.data.sample import Sample
    from clipdense.objectives.video_common import VideoView
    frames = torch.arange(8).view(8, 1, 1, 1).expand(8, 4, 4, 3).to(torch.uint8) * 30   # frame t is grey 30 t
    tokens = []
    transform = OverlapTransform(VideoView(4, scale=(1.0, 1.0), ratio=(1.0, 1.0), mean=(0, 0, 0), std=(1, 1, 1)),
                                 lambda caption: tokens.append(caption) or torch.zeros(3, dtype=torch.long), 0.5)
    sample = Sample(image=None, key="c0", caption="a red circle grows", frames=frames)
    out = transform(sample, torch.Generator().manual_seed(3))
    grey = (out["video"][:, 0, 0, 0] * 255 / 30).round().long()
    assert out["video"].shape == (8, 3, 4, 4) and tokens == ["a red circle grows"]
    assert grey[-1] - grey[0] >= 3 and bool((grey.diff() >= 0).all())   # at least half the clip, in order


def test_infonce_by_hand() -> None:
    video = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    text = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    # similarities video x text = [[1, 0.6], [0, 0.8]], scale 1; diagonal positives, both directions averaged
    v2t = -math.log(math.e / (math.e + math.exp(0.6))) - math.log(math.exp(0.8) / (1 + math.exp(0.8)))
    t2v = -math.log(math.e / (math.e + 1)) - math.log(math.exp(0.8) / (math.exp(0.6) + math.exp(0.8)))
    expected = (v2t / 2 + t2v / 2) / 2
    assert float(contrastive_loss(video, text, torch.tensor(1.0))) == pytest.approx(expected, abs=1e-6)


def test_retrieval_batch_keeps_the_anchors_nearest_clips() -> None:
    angles = torch.tensor([0.0, 170.0, 20.0, 90.0, 5.0, 45.0]) * math.pi / 180
    pool = torch.stack([angles.cos(), angles.sin()], 1) * torch.tensor([[1.0], [2], [3], [1], [5], [1]])  # norms vary
    assert nearest_batch(pool, 0, 3).tolist() == [0, 4, 2]         # anchor, then 5 and 20 degrees away
    assert nearest_batch(pool, 3, 3).tolist() == [3, 5, 2]         # from 90 degrees: 45, then 20
    assert nearest_batch(pool, 0, 10).tolist() == [0, 4, 2, 5, 3, 1]   # more than the pool: all, by closeness


def test_bad_option_is_one_line(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    code = main(["train", "--objective", "videoclip", "--data", f"msrvtt:root={tmp_path}", "--model", "tiny-vit-t8",
                 "--device", "cpu", "--steps", "1", "--out", str(tmp_path / "run"),
                 "--objective-arg", "min_window=1.5"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "min_window=1.5" in err[0] and "(0, 1]" in err[0]


def test_resume_with_retrieval_batches_is_exact(tmp_path: Path) -> None:
    """Stopped after its step-2 checkpoint and resumed, a run with random sub-clips and mined batches ends
    bit-identical to an uninterrupted one (windows come from the per-sample generator, the mining is deterministic)."""
    from clipdense.data.sample import Sample
    from clipdense.data.world.video import VideoWorldConfig, retrieval_clip
    from clipdense.train.config import TrainConfig

    cfg = VideoWorldConfig(frames=4, size=64)
    samples = [Sample(image=None, key=str(i), caption=(c := retrieval_clip(cfg, "train", i)).caption,
                      frames=torch.from_numpy(c.frames)) for i in range(8)]

    def config(out: Path, **more) -> TrainConfig:
        return TrainConfig(objective="videoclip", model="tiny-vit-t8", out=str(out), steps=4, batch_size=4, lr=1e-3,
                           warmup_steps=1, log_every=1, checkpoint_every=2, keep_checkpoints=2, device="cpu", seed=0,
                           num_workers=0, objective_args={"layers": 1, "coef_lr": 0.1, "retrieval_batches": True,
                                                          "batch_keep": 2}, **more)

    full, cut, _ = whole_and_resumed(config, samples, tmp_path)
    assert full.keys() == cut.keys() and any(k.startswith("clip.") for k in full)
    assert [k for k in full if not torch.equal(full[k], cut[k])] == []


@pytest.mark.slow   # writes a small video world, trains videoclip 40 steps on 8 clips, evaluates (~1 min, 2 cores)
def test_videoclip_overfits_a_handful_of_world_clips(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    world = tmp_path / "w"
    assert main(["data", "synth", "--out", str(world), "--train", "2", "--val", "1", "--image-size", "32",
                 "--classify-train-per-class", "0", "--classify-val-per-class", "0", "--video",
                 "--video-clips", "8"]) == 0
    root = world / "video" / "msrvtt"
    meta = json.loads((root / "MSRVTT_data.json").read_text())
    train = [r[0] for r in csv.reader((root / "MSRVTT_train.9k.csv").open())][1:]
    first = {}
    for s in meta["sentences"]:
        first.setdefault(s["video_id"], s["caption"])
    with (root / "seen.csv").open("w", newline="") as f:   # the training clips as a test list: overfitting, seen
        csv.writer(f).writerows([["key", "vid_key", "video_id", "sentence"]] +
                                [[v, v, v, first[v]] for v in train])
    seen = f"msrvtt:root={root},frames=4,test=seen.csv"
    model = ["--model", "tiny-vit-t8", "--pretrained", "synthworld", "--device", "cpu"]   # the shipped CLIP
    assert main(["train", "--objective", "videoclip", "--data", f"msrvtt:root={root},frames=4", *model,
                 "--steps", "40", "--batch-size", str(len(train)), "--lr", "2e-3", "--num-workers", "0",
                 "--checkpoint-every", "40", "--out", str(tmp_path / "run"), "--objective-arg", "layers=1",
                 "--objective-arg", "coef_lr=1.0", "--objective-arg", "retrieval_batches=true",
                 "--objective-arg", "batch_keep=4"]) == 0
    for head, out in ((None, "before.json"), (tmp_path / "run", "after.json")):
        assert main(["eval", *model, "--data", seen, "--tasks", "video-retrieval", "--out", str(tmp_path / out),
                     *(["--head", str(head)] if head else [])]) == 0
    before, after = (json.loads((tmp_path / n).read_text())["tasks"]["video-retrieval"]["text_to_video"]
                     for n in ("before.json", "after.json"))
    chance = 100 / len(train)
    print(f"clips {len(train)} chance {chance:.1f} R@1 before {before['R@1']:.1f} after {after['R@1']:.1f}")
    assert after["R@1"] >= 4 * chance and after["R@1"] > before["R@1"]
