"""Decoding frames with timestamps, and finding shot boundaries cheaply while decoding.

Two sampling modes:

* keyframes: the decoder skips every non-key frame, so only I-frames are decoded. Cuts are seen
  between neighbouring keyframes only, so a boundary is an interval (lo, hi] that holds the cut;
  `refine_cut` decodes that interval at full rate when the exact time matters.
* fps: every frame is decoded (H.264 needs it anyway), frames are kept at a fixed rate, and
  boundaries are exact because every neighbouring pair of frames is compared.

Cuts are found from a tiny per-frame signature: an RGB thumbnail. The distance of two
signatures is the larger of their colour-histogram distance and their mean absolute difference,
both in [0, 1].
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from mining.media import MediaError, VideoInfo, _container_start, frame_time, probe

log = logging.getLogger(__name__)

SIGNATURE_SIZE = (32, 18)
_HIST_BINS = 4


def signature(frame: av.VideoFrame, scaler: VideoReformatter | None = None) -> np.ndarray:
    """A frame's cut-detection signature: a 32x18 RGB thumbnail, float32 in [0, 1].

    Pass one `scaler` per stream: building a scaler per frame costs more than the scaling.
    """
    scaler = scaler or VideoReformatter()
    thumb = scaler.reformat(
        frame, width=SIGNATURE_SIZE[0], height=SIGNATURE_SIZE[1], format="rgb24"
    ).to_ndarray()
    return thumb.astype(np.float32) / 255.0


def signature_distance(a: np.ndarray, b: np.ndarray) -> float:
    """How different two signatures are, in [0, 1]: histogram or pixel change, the larger."""
    bins = np.minimum((np.stack([a, b]) * _HIST_BINS).astype(np.int64), _HIST_BINS - 1)
    codes = (bins[..., 0] * _HIST_BINS + bins[..., 1]) * _HIST_BINS + bins[..., 2]
    size = _HIST_BINS**3
    hist_a = np.bincount(codes[0].ravel(), minlength=size) / codes[0].size
    hist_b = np.bincount(codes[1].ravel(), minlength=size) / codes[1].size
    hist = 0.5 * float(np.abs(hist_a - hist_b).sum())
    pixels = float(np.abs(a - b).mean()) * 2.0
    return min(1.0, max(hist, pixels))


@dataclass
class FrameChunk:
    """A run of sampled frames of one video, with the cuts seen since the previous chunk."""

    times: list[float] = field(default_factory=list)
    frames: list[np.ndarray] = field(default_factory=list)  # RGB, frame_height high
    boundaries: list[tuple[float, float]] = field(default_factory=list)  # cut in (lo, hi]


def _scaled_size(info: VideoInfo, height: int) -> tuple[int, int]:
    height = min(height, info.height)
    width = max(2, round(info.width * height / info.height / 2) * 2)
    return width, height


def _open_video(path: str) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
    try:
        container = av.open(path)
    except (av.FFmpegError, OSError) as err:
        raise MediaError(f"cannot open as media: {err}") from err
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["no streams"]
        container.close()
        raise MediaError(f"no video stream (has {', '.join(kinds)})")
    return container, container.streams.video[0]


def decode_frames(
    path: str,
    mode: str = "keyframes",
    fps: float = 1.0,
    frame_height: int = 180,
    chunk_frames: int = 64,
    shot_threshold: float = 0.35,
) -> Iterator[FrameChunk]:
    """Yield chunks of sampled frames with times (s from the container start) and boundaries.

    Raises MediaError when the file does not open, has no video, fails to decode, decodes no
    frame, or ends well before its stated duration (a truncated file).
    """
    if mode not in ("keyframes", "fps"):
        raise ValueError(f"decode mode must be 'keyframes' or 'fps', got {mode!r}")
    info = probe(path)
    width, height = _scaled_size(info, frame_height)
    container, stream = _open_video(path)
    keyframes_only = mode == "keyframes"
    stream.thread_type = "AUTO"
    if keyframes_only:
        stream.codec_context.skip_frame = "NONKEY"
    origin = _container_start(container)

    chunk = FrameChunk()
    sig_scaler, frame_scaler = VideoReformatter(), VideoReformatter()
    previous: tuple[float, np.ndarray] | None = None
    next_sample = 0.0
    last_packet_s = 0.0
    decoded = 0
    try:
        for packet in container.demux(stream):
            if packet.pts is not None:
                last_packet_s = max(last_packet_s, float(packet.pts * packet.time_base) - origin)
            if keyframes_only and packet.size and not packet.is_keyframe:
                continue  # some decoders (vp9) ignore skip_frame; never feed them other frames
            for frame in packet.decode():
                decoded += 1
                t = frame_time(frame, origin)
                sig = signature(frame, sig_scaler)
                if previous is not None and signature_distance(previous[1], sig) > shot_threshold:
                    chunk.boundaries.append((previous[0], t))
                previous = (t, sig)
                if not keyframes_only:
                    if t + 1e-6 < next_sample:
                        continue
                    next_sample = (math.floor(t * fps + 1e-6) + 1) / fps  # on the grid, no drift
                chunk.times.append(t)
                scaled = frame_scaler.reformat(frame, width=width, height=height, format="rgb24")
                chunk.frames.append(scaled.to_ndarray())
                if len(chunk.times) >= chunk_frames:
                    yield chunk
                    chunk = FrameChunk()
    except av.FFmpegError as err:
        raise MediaError(f"decoding failed after {decoded} frames: {err}") from err
    finally:
        container.close()

    if decoded == 0:
        raise MediaError("no frame could be decoded")
    if info.duration_s > 0 and last_packet_s < info.duration_s - max(1.0, 0.05 * info.duration_s):
        raise MediaError(
            f"truncated: data ends at {last_packet_s:.1f}s of a stated {info.duration_s:.1f}s"
        )
    if chunk.times or chunk.boundaries:
        yield chunk


def _frames_from(container, stream, origin: float, t: float) -> Iterator[av.VideoFrame]:
    """Decoded frames from the last one at or before t onwards.

    A seek may land after t (MPEG-TS seeks to the next keyframe); then seek further back.
    """
    for back in (0.0, 2.0, 10.0, None):
        target = 0.0 if back is None else max(t - back + origin, 0.0)
        container.seek(int(target / stream.time_base), stream=stream, backward=True)
        frames = container.decode(stream)
        first = next(frames, None)
        if first is None:
            return
        if back is None or frame_time(first, origin) <= t + 1e-6:
            yield first
            yield from frames
            return


def refine_cut(path: str, lo: float, hi: float, shot_threshold: float = 0.35) -> float | None:
    """The exact time of the strongest cut in (lo, hi], decoding that interval at full rate.

    Returns the time of the first frame of the new shot, or None when no pair of neighbouring
    frames differs by more than `shot_threshold` (the coarse boundary was motion, not a cut).
    """
    container, stream = _open_video(path)
    origin = _container_start(container)
    best: tuple[float, float] | None = None
    previous: np.ndarray | None = None
    scaler = VideoReformatter()
    try:
        for frame in _frames_from(container, stream, origin, lo):
            t = frame_time(frame, origin)
            if t < lo - 1e-6:
                continue
            sig = signature(frame, scaler)
            if previous is not None:
                distance = signature_distance(previous, sig)
                if distance > shot_threshold and (best is None or distance > best[0]):
                    best = (distance, t)
            previous = sig
            if t >= hi - 1e-6:
                break
    except av.FFmpegError as err:
        raise MediaError(f"decoding ({lo:.2f}, {hi:.2f}] failed: {err}") from err
    finally:
        container.close()
    return None if best is None else best[1]
