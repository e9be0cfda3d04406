"""WebDataset shards of decoded frames (issue 28's third video layout): hand-made shards read back exactly, frames
sampled like a decoded clip's, a corrupt member skipped and counted, bad shards refused in one line, and the
video world's shards equal its MSR-VTT clips' captions."""
from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

from clipdense.data.formats.video_shards import FrameShards, write_frame_shards
from clipdense.data.readers import open_data
from clipdense.data.video import FrameSampling, uniform_indices
from clipdense.errors import DataError


def _clip(value: int, t: int = 6) -> np.ndarray:
    frames = np.zeros((t, 4, 5, 3), dtype=np.uint8)
    frames[:] = np.arange(t, dtype=np.uint8)[:, None, None, None] + value   # frame i holds value + i
    return frames


def test_round_trip_and_uniform_sampling(tmp_path: Path) -> None:
    clips = [(f"c{i}", _clip(10 * i), f"caption {i}", i % 2) for i in range(5)]
    written = write_frame_shards(tmp_path, "train", clips, fps=8.0, per_shard=2)
    assert [p.name for p in written] == ["train-000000.tar", "train-000001.tar", "train-000002.tar"]
    data = FrameShards(tmp_path, FrameSampling(num_frames=3))
    assert len(data) == 5
    sample = data[3]
    assert sample.caption == "caption 3" and sample.image_label == 1 and sample.frames.shape == (3, 4, 5, 3)
    picked = [30 + i for i in uniform_indices(6, 3)]                    # the centres of 3 segments of 6 frames
    assert sample.frames[:, 0, 0, 0].tolist() == picked
    # fps sampling reads the rate stored beside the frames: 8 fps frames at 4 fps -> every other frame
    every_other = FrameShards(tmp_path, FrameSampling(num_frames=8, mode="fps", fps=4.0))[0]
    assert every_other.frames[:, 0, 0, 0].tolist() == [0, 2, 4]


def test_open_data_and_a_corrupt_member_is_skipped_and_counted(tmp_path: Path) -> None:
    write_frame_shards(tmp_path / "s", "val", [("good", _clip(0), "a red circle grows", None)], fps=8.0)
    with tarfile.open(tmp_path / "s" / "val-000001.tar", "w") as tar:
        for name, data in (("bad.frames.npy", b"not numpy"), ("bad.txt", b"a blue star spins")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    opened = open_data(f"wds-video:path={tmp_path / 's'},frames=2", needs={"frames", "caption"})
    reader = opened[0]
    samples = list(reader)
    assert [s.caption for s in samples] == ["a red circle grows"] and reader.skips.count == 1


@pytest.mark.parametrize("make, message", [
    (lambda d: None, "no .tar shards"),
    (lambda d: (d / "x.tar").write_bytes(b"junk"), "not a readable WebDataset shard"),
    (lambda d: write_frame_shards(d, "x", [], fps=1.0) or _tar_with(d / "y.tar", "k.jpg"), "no KEY.frames.npy"),
])
def test_bad_shards_are_one_line(tmp_path: Path, make, message: str) -> None:
    make(tmp_path)
    with pytest.raises(DataError, match=message) as err:
        FrameShards(tmp_path)
    assert "\n" not in str(err.value)


def _tar_with(path: Path, name: str) -> None:
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo(name)
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))


def test_the_video_world_writes_its_retrieval_clips_as_shards(tmp_path: Path) -> None:
    from clipdense.data.formats.video import MsrvttClips
    from clipdense.data.world.video import VideoWorldConfig
    from clipdense.data.world.video_writer import write_video_world

    cfg = VideoWorldConfig(train=3, val=2, order_pairs=1, per_action=1, frames=4, size=32)
    write_video_world(tmp_path, cfg)
    train = FrameShards(tmp_path / "shards" / "train-000000.tar", FrameSampling(num_frames=4))
    msrvtt = MsrvttClips(tmp_path / "msrvtt", "train", sampling=FrameSampling(num_frames=4))
    assert [s.caption for s in train] == [s.caption for s in msrvtt] and len(train) == 3
    assert len(FrameShards(tmp_path / "shards" / "val-000000.tar")) == 2
    # the shard holds the frames before MPEG-4 coding: the decoded video is close to them, not equal
    assert (train[0].frames.float() - msrvtt[0].frames.float()).abs().mean() < 12
