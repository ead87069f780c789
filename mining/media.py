"""Locating ffmpeg and probing media files with PyAV."""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from dataclasses import dataclass
from fractions import Fraction

import av


class MediaError(Exception):
    """A media file that cannot be opened, has no video, or fails to decode."""


@functools.cache
def ffmpeg_binary() -> str:
    """The ffmpeg on PATH, else the binary shipped by the imageio-ffmpeg wheel."""
    override = os.environ.get("VCC_FFMPEG")
    if override:
        return override
    on_path = shutil.which("ffmpeg")
    if on_path:
        return on_path
    try:
        import imageio_ffmpeg
    except ImportError as err:  # pragma: no cover - the project depends on it
        raise RuntimeError(
            "no ffmpeg found: put one on PATH or `pip install imageio-ffmpeg`"
        ) from err
    return imageio_ffmpeg.get_ffmpeg_exe()


@functools.cache
def ffmpeg_dir() -> str:
    """A folder whose `ffmpeg` is ffmpeg_binary(): what yt-dlp's ffmpeg_location expects.

    yt-dlp recognises ffmpeg by its file name, and the imageio-ffmpeg wheel's binary has a
    versioned name, so a link named `ffmpeg` is made beside nothing else in a temp folder.
    """
    binary = ffmpeg_binary()
    if os.path.basename(binary) == "ffmpeg":
        return os.path.dirname(binary)
    folder = os.path.join(tempfile.gettempdir(), f"vcc-ffmpeg-{os.getuid()}")
    os.makedirs(folder, exist_ok=True)
    link = os.path.join(folder, "ffmpeg")
    if not os.path.islink(link) or os.readlink(link) != binary:
        temp = f"{link}.{os.getpid()}"
        os.symlink(binary, temp)
        os.replace(temp, link)
    return folder


@dataclass(frozen=True)
class VideoInfo:
    """What a probe tells about a file's first video stream."""

    duration_s: float
    width: int
    height: int
    fps: float
    start_s: float  # the container's start time; every time in the project is relative to it
    has_audio: bool
    codec: str


def _container_start(container: av.container.InputContainer) -> float:
    return container.start_time / av.time_base if container.start_time is not None else 0.0


def frame_time(frame: av.VideoFrame, origin_s: float) -> float:
    """A frame's presentation time in seconds from the container's start."""
    return float(frame.pts * frame.time_base) - origin_s if frame.pts is not None else 0.0


def probe(path: str) -> VideoInfo:
    """Probe a video file without decoding; raises MediaError when it is not a usable video."""
    try:
        container = av.open(path)
    except (av.FFmpegError, OSError) as err:
        raise MediaError(f"cannot open as media: {err}") from err
    with container:
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams}) or ["no streams"]
            raise MediaError(f"no video stream (has {', '.join(kinds)})")
        stream = container.streams.video[0]
        origin = _container_start(container)
        if stream.duration is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        else:
            duration = 0.0
        rate = stream.average_rate or stream.guessed_rate or Fraction(0)
        return VideoInfo(
            duration_s=duration,
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            fps=float(rate),
            start_s=origin,
            has_audio=bool(container.streams.audio),
            codec=stream.codec_context.name,
        )
