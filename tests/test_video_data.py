"""Video data: the PyAV decoder (mp4 round trip, uniform and fps sampling by hand), bad files refused in one line,
frames moved by the geometric transforms like the image, the MSR-VTT and Kinetics layouts on hand-written files,
and the video world (deterministic, order pairs, held-out motions absent from training, readable layouts)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from clipdense.data import video as video_module
from clipdense.data.formats.video import KineticsClips, MsrvttClips, read_msrvtt_pairs
from clipdense.data.media import media_kind
from clipdense.data.readers import open_data
from clipdense.data.sample import Sample
from clipdense.data.transforms import crop, hflip, resize, resize_frames
from clipdense.data.video import FrameSampling, read_video, uniform_indices, write_video
from clipdense.data.world.video import HELD_OUT, VideoWorldConfig, order_pair, retrieval_clip
from clipdense.data.world.video_writer import write_video_world
from clipdense.errors import ConfigError, DataError, ImageLoadError

pytest.importorskip("av")


def _numbered(count: int, size: int = 64) -> np.ndarray:
    """Flat grey frames whose brightness says their index (10, 25, 40, ...): decodable exactly enough to count."""
    return np.stack([np.full((size, size, 3), 10 + 15 * i, np.uint8) for i in range(count)])


def _brightness(frames: torch.Tensor) -> list[int]:
    return [int(round(float(f.float().mean()))) for f in frames]


def test_uniform_indices_by_hand() -> None:
    assert uniform_indices(10, 4) == [1, 3, 6, 8]          # centres of four segments of 2.5 frames
    assert uniform_indices(3, 6) == [0, 0, 1, 1, 2, 2]     # a short clip repeats frames
    assert uniform_indices(8, 8) == list(range(8))


def test_mp4_round_trip_and_sampling(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    write_video(path, _numbered(16), fps=8)
    assert media_kind(path) == "video"
    every = read_video(path, FrameSampling(16))
    assert every.shape == (16, 64, 64, 3) and every.dtype == torch.uint8
    assert all(abs(b - (10 + 15 * i)) <= 2 for i, b in enumerate(_brightness(every)))
    uniform = read_video(path, FrameSampling(4))                      # frames 2, 6, 10, 14
    assert [round((b - 10) / 15) for b in _brightness(uniform)] == [2, 6, 10, 14]
    at_2fps = read_video(path, FrameSampling(8, "fps", fps=2.0))      # t = 0, .5, 1, 1.5 s at 8 fps
    assert [round((b - 10) / 15) for b in _brightness(at_2fps)] == [0, 4, 8, 12]
    capped = read_video(path, FrameSampling(2, "fps", fps=2.0))       # 4 candidates, an even pair kept
    assert [round((b - 10) / 15) for b in _brightness(capped)] == [4, 12]


def test_bad_videos_refused_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    with pytest.raises(ImageLoadError, match="notes.mp4: not a readable video"):
        read_video(text)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(ImageLoadError, match="empty.mp4"):
        read_video(empty)
    single = tmp_path / "single.mp4"
    write_video(single, _numbered(1))
    with pytest.raises(ImageLoadError, match="single frame"):
        read_video(single)
    with pytest.raises(ImageLoadError, match="no such file"):
        read_video(tmp_path / "missing.mp4")
    big = tmp_path / "big.mp4"
    write_video(big, _numbered(3))
    monkeypatch.setattr(video_module, "MAX_FRAME_PIXELS", 32 * 32)
    with pytest.raises(ImageLoadError, match="64x64 frames; at most 1024 pixels"):
        read_video(big)
    for bad in (dict(num_frames=0), dict(num_frames=-3), dict(mode="random"), dict(fps=0.0)):
        with pytest.raises(ConfigError):
            FrameSampling(**bad)


def test_geometry_moves_every_frame_alike() -> None:
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (3, 20, 30, 3), generator=g, dtype=torch.uint8)
    sample = Sample(image=None, key="v", frames=frames)
    assert torch.equal(hflip(sample).frames, frames.flip(2))
    assert torch.equal(crop(sample, 2, 5, 10, 12).frames, frames[:, 2:12, 5:17])
    resized = resize(sample, (16, 24)).frames
    assert resized.shape == (3, 16, 24, 3)
    for t in range(3):   # the batch of frames resized at once = each frame resized alone
        assert torch.equal(resized[t], resize_frames(frames[t:t + 1], (16, 24))[0])


def _write_msrvtt(root: Path) -> None:
    (root / "videos" / "all").mkdir(parents=True)
    for i in range(3):
        write_video(root / "videos" / "all" / f"video{i}.mp4", _numbered(4 + i))
    sentences = [("video0", "a red star moves left"), ("video0", "a star goes left"), ("video1", "a square grows"),
                 ("video2", "a blue heart spins")]
    (root / "MSRVTT_data.json").write_text(json.dumps({
        "videos": [{"video_id": f"video{i}", "split": "train" if i < 2 else "test", "id": i} for i in range(3)],
        "sentences": [{"caption": c, "video_id": v, "sen_id": n} for n, (v, c) in enumerate(sentences)]}))
    (root / "MSRVTT_train.9k.csv").write_text("video_id\nvideo0\nvideo1\n")
    (root / "MSRVTT_JSFUSION_test.csv").write_text("key,vid_key,video_id,sentence\nret0,msr2,video2,a blue heart spins\n")


def test_msrvtt_layout_by_hand(tmp_path: Path) -> None:
    root = tmp_path / "msrvtt"
    _write_msrvtt(root)
    train = MsrvttClips(root, "train", sampling=FrameSampling(4))
    assert [(p.video_id, p.sentence) for p in train.pairs] == [
        ("video0", "a red star moves left"), ("video0", "a star goes left"), ("video1", "a square grows")]
    sample = train[2]
    assert sample.image is None and sample.caption == "a square grows" and sample.frames.shape == (4, 64, 64, 3)
    test = MsrvttClips(root, "val")
    assert test.video_ids == ["video2"] and test[0].caption == "a blue heart spins"
    reader, kind, _ = open_data(f"msrvtt:root={root},frames=3", needs={"caption", "frames"}, split="val")
    assert not kind.images and reader[0].frames.shape[0] == 3
    (root / "MSRVTT_train.9k.csv").write_text("video_id\nvideo0\nvideo7\n")
    with pytest.raises(DataError, match="no sentence for 1 training video"):
        read_msrvtt_pairs(root, "train")


def test_kinetics_layout_by_hand_and_corrupt_clip_skipped(tmp_path: Path) -> None:
    root = tmp_path / "k"
    for name, count in (("moves_left", 2), ("grows", 1)):
        (root / "train" / name).mkdir(parents=True)
        for j in range(count):
            write_video(root / "train" / name / f"{j}.mp4", _numbered(4))
    (root / "train" / "grows" / "broken.mp4").write_bytes(b"\x00" * 100)
    clips = KineticsClips(root, "train", FrameSampling(2))
    assert clips.classes == ["grows", "moves left"] and clips.labels == [0, 0, 1, 1]
    samples = list(clips)   # iteration skips, names and counts the broken file
    assert len(samples) == 3 and clips.skips.count == 1 and "broken.mp4" in clips.skips.examples[0]
    assert [s.image_label for s in samples] == [0, 1, 1]
    with pytest.raises(DataError, match="no such folder"):
        KineticsClips(root, "val")


def test_video_world_is_deterministic_and_holds_out_motions() -> None:
    cfg = VideoWorldConfig(train=30, val=4, frames=8, size=48)
    a, b = retrieval_clip(cfg, "train", 3), retrieval_clip(cfg, "train", 3)
    assert np.array_equal(a.frames, b.frames) and a.caption == b.caption and a.frames.shape == (8, 48, 48, 3)
    motions = {m for i in range(cfg.train) for m in retrieval_clip(cfg, "train", i).motions}
    assert motions and not motions & set(HELD_OUT)
    first, second = order_pair(cfg, 0)
    one, two = first.caption.split(", then ")
    assert second.caption == f"{two}, then {one}" and first.motions == second.motions[::-1]
    assert not np.array_equal(first.frames, second.frames)


def test_video_world_layouts_read_back(tmp_path: Path) -> None:
    cfg = VideoWorldConfig(train=4, val=2, order_pairs=1, per_action=1, frames=4, size=32)
    counts = write_video_world(tmp_path, cfg)
    assert counts == {"train": 4, "val": 2, "order": 2, "kinetics-train": 9, "kinetics-val": 12}
    meta = json.loads((tmp_path / "video.json").read_text())
    assert meta["held_out"] == list(HELD_OUT)
    train = MsrvttClips(tmp_path / "msrvtt", "train", sampling=FrameSampling(4))
    assert len(train) == 4 and train[0].caption == retrieval_clip(cfg, "train", 0).caption
    order = MsrvttClips(tmp_path / "msrvtt", "val", test="order_test.csv")
    assert len(order) == 2
    kinetics = KineticsClips(tmp_path / "kinetics", "val")
    assert set(HELD_OUT) <= set(kinetics.classes) and not set(HELD_OUT) & set(
        KineticsClips(tmp_path / "kinetics", "train").classes)


@pytest.mark.parametrize(("sentences", "named"), [
    ({"video0": "a circle moves"}, "'sentences' is not a list"),
    ([{"video_id": "video0", "caption": "fine"}, None], r"sentences\[1\] is not an entry"),
    ([{"caption": "a circle moves"}], r"sentences\[0\] is not an entry with 'video_id' and 'caption'"),
    (["video0"], r"sentences\[0\]"),
])
def test_msrvtt_sentences_that_are_not_entries_are_one_line(tmp_path: Path, sentences, named: str) -> None:
    (tmp_path / "MSRVTT_data.json").write_text(json.dumps({"videos": [], "sentences": sentences}))
    (tmp_path / "MSRVTT_train.9k.csv").write_text("video_id\nvideo0\n")
    with pytest.raises(DataError, match=named):
        read_msrvtt_pairs(tmp_path, "train")
