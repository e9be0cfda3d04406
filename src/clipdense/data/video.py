"""Videos as data: decoding with PyAV (FFmpeg's libraries, bundled in its wheel), frame sampling, writing, and the
checks every entry point applies (not a video, no frames, one frame, a huge resolution).

A clip becomes ``Sample.frames``: (T, H, W, 3) uint8 RGB. Frames are sampled in the reader, as CLIP4Clip and
ActionCLIP do: ``uniform`` takes ``num_frames`` evenly spaced over the whole clip (a short clip repeats frames, so T
is always ``num_frames``); ``fps`` takes one frame every 1/fps seconds and, past ``num_frames``, keeps an even
subset (CLIP4Clip's 1 frame/s with ``max_frames``).

Why PyAV and not torchcodec: torchcodec's compiled ops are built against one torch release and need the system's
FFmpeg shared libraries (none here); PyAV depends on neither. ``bench/video.py`` measures its decode speed.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from ..errors import ConfigError, DataError
from .images import load_error
from .media import register_media

VIDEO_SUFFIXES = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v")
register_media("video", VIDEO_SUFFIXES)

#: the largest frame any entry point decodes (4096 x 4096): a larger stream is refused before decoding
MAX_FRAME_PIXELS = 4096 * 4096
#: the most frames one clip may hold (an hour at 30 fps); longer videos are refused in one line (cut them first)
MAX_FRAMES = 108_000
#: the most frames a reader may sample from one clip (a frame-count flag above it is refused)
MAX_SAMPLED_FRAMES = 256
SAMPLINGS = ("uniform", "fps")
FF_QP2LAMBDA = 118   # libavcodec's factor between a quantiser scale and its lambda


@dataclass(frozen=True)
class FrameSampling:
    """How a reader picks frames from a clip.

    Args:
        num_frames: frames per clip (uniform: exactly this many; fps: at most this many).
        mode: ``uniform`` (evenly spaced over the clip) or ``fps`` (one frame every 1/``fps`` seconds).
        fps: the rate of ``fps`` sampling (CLIP4Clip: 1 frame per second).
    """

    num_frames: int = 8
    mode: str = "uniform"
    fps: float = 1.0

    def __post_init__(self) -> None:
        if not 1 <= int(self.num_frames) <= MAX_SAMPLED_FRAMES:
            raise ConfigError(f"frame count {self.num_frames}: expected 1..{MAX_SAMPLED_FRAMES} frames per clip")
        if self.mode not in SAMPLINGS:
            raise ConfigError(f"frame sampling {self.mode!r}: expected one of {list(SAMPLINGS)}")
        if not 0.01 <= float(self.fps) <= 240.0:
            raise ConfigError(f"sampling fps {self.fps}: expected 0.01..240 frames per second")


def uniform_indices(total: int, count: int) -> list[int]:
    """``count`` frame indices evenly spaced over ``total`` frames: the centres of ``count`` equal segments
    (a shorter clip repeats frames)."""
    return [min(total - 1, int((i + 0.5) * total / count)) for i in range(count)]


def _av():
    try:
        import av
    except ImportError as exc:   # pragma: no cover - the video extra is missing
        raise DataError("reading videos needs PyAV: pip install 'clipdense[video]'") from exc
    return av


def _open(path: Path):
    """The container and its first video stream, or ImageLoadError naming the file."""
    av = _av()
    if not path.is_file():
        raise load_error(str(path), "no such file")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise load_error(str(path), "not a readable video file (MP4, AVI, WebM, MKV or MOV expected)") from exc
    if not container.streams.video:
        container.close()
        raise load_error(str(path), "holds no video stream")
    return container, container.streams.video[0]


def _check_stream(path: Path, stream) -> None:
    width, height = stream.codec_context.width, stream.codec_context.height
    if width * height > MAX_FRAME_PIXELS:
        raise load_error(str(path), f"{width}x{height} frames; at most {MAX_FRAME_PIXELS} pixels a frame are "
                         "decoded (scale the video down first)")
    if stream.frames and stream.frames > MAX_FRAMES:
        raise load_error(str(path), f"{stream.frames} frames; at most {MAX_FRAMES} are read (cut it first)")


def _decoded(path: Path, container, stream) -> Iterator[tuple[float, np.ndarray]]:
    """(time in seconds, RGB frame) for every decodable frame; a stream that breaks midway ends the clip there."""
    av = _av()
    rate = float(stream.average_rate) if stream.average_rate else 25.0
    try:
        for index, frame in enumerate(container.decode(stream)):
            if index >= MAX_FRAMES:
                raise load_error(str(path), f"more than {MAX_FRAMES} frames (cut it first)")
            time = float(frame.time) if frame.time is not None else index / rate
            yield time, frame.to_ndarray(format="rgb24")
    except av.error.FFmpegError as exc:
        raise load_error(str(path), f"the video stream is corrupt ({type(exc).__name__})") from exc


def select_frames(frames: list[tuple[float, np.ndarray]], sampling: FrameSampling) -> list[np.ndarray]:
    """The frames ``sampling`` picks from (time in seconds, frame) pairs: a decoded video's or a shard's."""
    if sampling.mode == "fps":
        chosen, next_time, start = [], 0.0, frames[0][0]
        for time, frame in frames:
            if time - start >= next_time - 1e-6:
                chosen.append(frame)
                next_time += 1.0 / sampling.fps
        if len(chosen) > sampling.num_frames:
            chosen = [chosen[i] for i in uniform_indices(len(chosen), sampling.num_frames)]
        return chosen
    return [frames[i][1] for i in uniform_indices(len(frames), sampling.num_frames)]


def read_video(path: str | os.PathLike, sampling: FrameSampling | None = None) -> torch.Tensor:
    """A video file's sampled frames (T, H, W, 3) uint8. A file that is not a video, holds no frames or one
    frame, or is too large raises ``ImageLoadError`` (readers skip and count it; the CLI prints its one line)."""
    sampling, path = sampling or FrameSampling(), Path(path)
    container, stream = _open(path)
    try:
        _check_stream(path, stream)
        frames = list(_decoded(path, container, stream))
    finally:
        container.close()
    if not frames:
        raise load_error(str(path), "zero-length video (no decodable frame)")
    if len(frames) == 1:
        raise load_error(str(path), "a single frame: a still image, not a video (classify it as an image)")
    return torch.from_numpy(np.stack(select_frames(frames, sampling)))


def video_info(path: str | os.PathLike) -> dict[str, float]:
    """Width, height, frame count (0 when the container does not say) and frame rate of a video, without
    decoding it."""
    path = Path(path)
    container, stream = _open(path)
    try:
        return {"width": stream.codec_context.width, "height": stream.codec_context.height,
                "frames": int(stream.frames or 0), "fps": float(stream.average_rate or 0.0)}
    finally:
        container.close()


def write_video(path: str | os.PathLike, frames: torch.Tensor | np.ndarray | Sequence[np.ndarray], fps: float = 8.0,
                quality: int = 2) -> None:
    """Write (T, H, W, 3) uint8 frames as an MPEG-4 Part 2 video (``.mp4``/``.avi``/``.mkv``; FFmpeg's own
    encoder, present in every build) at constant quality ``quality`` (1 best .. 31); odd sides are padded."""
    av = _av()
    array = np.asarray(frames.numpy() if isinstance(frames, torch.Tensor) else np.stack(list(frames)), np.uint8)
    if array.ndim != 4 or array.shape[-1] != 3 or array.shape[0] < 1:
        raise DataError(f"{path}: expected frames (T, H, W, 3), got shape {tuple(array.shape)}")
    height, width = array.shape[1] + array.shape[1] % 2, array.shape[2] + array.shape[2] % 2
    array = np.pad(array, ((0, 0), (0, height - array.shape[1]), (0, width - array.shape[2]), (0, 0)), mode="edge")
    from fractions import Fraction
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.qscale = True   # constant quality: -q:v QUALITY, in FFmpeg's lambda units
        stream.codec_context.global_quality = int(quality) * FF_QP2LAMBDA
        for frame in array:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def frames_to_images(frames: torch.Tensor) -> list:
    """(T, H, W, 3) uint8 frames as PIL images (the image tower's preprocess takes those)."""
    from PIL import Image
    return [Image.fromarray(frame.numpy()) for frame in frames]


def check_frames(frames: torch.Tensor, what: str) -> torch.Tensor:
    """``frames`` as (T, H, W, 3) uint8, checked: one line naming ``what`` for a wrong shape, no frames or one."""
    if not isinstance(frames, torch.Tensor) or frames.ndim != 4 or frames.shape[-1] != 3:
        shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise DataError(f"{what}: expected video frames (T, H, W, 3) uint8, got {shape}")
    if frames.shape[0] < 2:
        raise DataError(f"{what}: {frames.shape[0]} frame(s); a video needs at least 2")
    if frames.shape[1] * frames.shape[2] > MAX_FRAME_PIXELS:
        raise DataError(f"{what}: {frames.shape[2]}x{frames.shape[1]} frames; at most {MAX_FRAME_PIXELS} pixels")
    return frames if frames.dtype == torch.uint8 else frames.clamp(0, 255).to(torch.uint8)
