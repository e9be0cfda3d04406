"""Write the video world (``clipdense data synth --video``, or ``write_video_world(OUT)`` alone)::

    OUT/video.json                          the VideoWorldConfig, every motion, the held-out motions, counts
    OUT/msrvtt/videos/all/videoN.mp4        train, val and order-split clips (MPEG-4)
    OUT/msrvtt/MSRVTT_data.json             sentences per video id (one per clip), each video's split
    OUT/msrvtt/MSRVTT_train.9k.csv          the training list (train clips)
    OUT/msrvtt/MSRVTT_JSFUSION_test.csv     the 1k-A style test list (val clips, one sentence each)
    OUT/msrvtt/order_test.csv               the order split in the same columns (pairs: both orders of two events)
    OUT/kinetics/train/<motion>/*.mp4       single-motion clips of the seen motions
    OUT/kinetics/val/<motion>/*.mp4         single-motion clips of every motion (held-out ones: zero-shot)
    OUT/shards/{train,val}-000000.tar       the train and val clips again as WebDataset shards of decoded frames

Read them with ``--data msrvtt:root=OUT/msrvtt`` (``,test=order_test.csv`` for the order split) and
``--data kinetics:root=OUT/kinetics``; the shards with ``--data 'wds-video:path=OUT/shards/train-000000.tar'``.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable

from ...config import atomic_write_bytes
from ...errors import ConfigError
from ..formats.video import VideoText, kinetics_path, write_msrvtt_meta
from ..formats.video_shards import write_frame_shards
from ..video import write_video
from .video import MOTIONS, VideoWorldConfig, action_clip, order_pair, retrieval_clip

VIDEO_DIR = "video"


def check_config(cfg: VideoWorldConfig) -> None:
    """One line for a config that cannot make a world."""
    unknown = [m for m in cfg.held_out if m not in MOTIONS]
    if unknown:
        raise ConfigError(f"held-out motions {unknown}: expected some of {list(MOTIONS)}")
    if not 4 <= cfg.frames <= 64 or cfg.frames % 2:
        raise ConfigError(f"video world frames {cfg.frames}: expected an even count in 4..64")
    if not 32 <= cfg.size <= 256:
        raise ConfigError(f"video world frame size {cfg.size}: expected 32..256 pixels")
    if min(cfg.train, cfg.val) < 1 or min(cfg.order_pairs, cfg.per_action) < 1:
        raise ConfigError("video world: train, val, order_pairs and per_action must each be at least 1")


def total_clips(cfg: VideoWorldConfig) -> int:
    """How many files ``write_video_world`` writes (for progress bars)."""
    return cfg.train + cfg.val + 2 * cfg.order_pairs + cfg.per_action * (len(cfg.seen_motions) + len(MOTIONS))


def write_video_world(out: str | Path, cfg: VideoWorldConfig | None = None,
                      progress: Callable[[int], None] | None = None) -> dict[str, int]:
    """Write the video world under ``out`` (see the module docstring); returns clip counts per part."""
    cfg, out, step = cfg or VideoWorldConfig(), Path(out), progress or (lambda n: None)
    check_config(cfg)
    msrvtt = out / "msrvtt"
    (msrvtt / "videos" / "all").mkdir(parents=True, exist_ok=True)
    sentences: dict[str, list[str]] = {}
    splits: dict[str, str] = {}
    tests: dict[str, list[VideoText]] = {"MSRVTT_JSFUSION_test.csv": [], "order_test.csv": []}

    shards: dict[str, list] = {"train": [], "val": []}

    def put(clip, split: str) -> str:
        video_id = f"video{len(sentences)}"
        if split in ("train", "test"):   # the retrieval clips, decoded, for the shards
            shards["train" if split == "train" else "val"].append((video_id, clip.frames, clip.caption, None))
        write_video(msrvtt / "videos" / "all" / f"{video_id}.mp4", clip.frames, cfg.fps)
        sentences[video_id], splits[video_id] = [clip.caption], split
        step(1)
        return video_id

    for i in range(cfg.train):
        put(retrieval_clip(cfg, "train", i), "train")
    for i in range(cfg.val):
        clip = retrieval_clip(cfg, "val", i)
        tests["MSRVTT_JSFUSION_test.csv"].append(VideoText(put(clip, "test"), clip.caption))
    for i in range(cfg.order_pairs):
        for clip in order_pair(cfg, i):
            tests["order_test.csv"].append(VideoText(put(clip, "validate"), clip.caption))
    write_msrvtt_meta(msrvtt, sentences, splits, tests)
    for prefix, clips in shards.items():
        write_frame_shards(out / "shards", prefix, clips, cfg.fps)
    counts = {"train": cfg.train, "val": cfg.val, "order": 2 * cfg.order_pairs, "kinetics-train": 0,
              "kinetics-val": 0}
    for split, motions in (("train", cfg.seen_motions), ("val", list(MOTIONS))):
        for motion in motions:
            for j in range(cfg.per_action):
                clip = action_clip(cfg, split, motion, j)
                write_video(kinetics_path(out / "kinetics", split, motion, f"{motion.replace(' ', '_')}_{j:04d}"),
                            clip.frames, cfg.fps)
                counts[f"kinetics-{split}"] += 1
                step(1)
    meta = {"config": dataclasses.asdict(cfg), "motions": list(MOTIONS), "held_out": list(cfg.held_out),
            "seen": cfg.seen_motions, "counts": counts}
    atomic_write_bytes(out / "video.json", json.dumps(meta, indent=1).encode())
    return counts
