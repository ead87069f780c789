"""Cutting clips with ffmpeg, probing what was really cut, and sampling JPEG frames from it."""

from __future__ import annotations

import io
import logging
import os
import tempfile
from dataclasses import dataclass

import av
import ffmpeg
import numpy as np
from PIL import Image

from mining.media import MediaError, _container_start, ffmpeg_binary, frame_time, probe

log = logging.getLogger(__name__)


@dataclass
class Clip:
    """A cut clip: its bytes, its real span in the source, and what a probe says of it."""

    data: bytes
    start_s: float
    end_s: float
    width: int
    height: int
    fps: float
    duration_s: float
    frames: list[bytes]  # JPEG


def keyframe_at_or_before(path: str, t: float) -> float:
    """Time of the last keyframe at or before t (where a stream copy really starts)."""
    with av.open(path) as container:
        stream = container.streams.video[0]
        origin = _container_start(container)
        # seek near t first; a seek that lands past t (MPEG-TS can) falls back to the start
        for start in (max(t, 0.0), 0.0):
            container.seek(int((start + origin) / stream.time_base), stream=stream, backward=True)
            best = None
            for packet in container.demux(stream):
                if packet.pts is None:
                    continue
                pt = float(packet.pts * packet.time_base) - origin
                if packet.is_keyframe and pt <= t + 1e-3:
                    best = pt if best is None else max(best, pt)
                if pt > t + 5:  # packets are roughly in order; well past t nothing changes
                    break
            if best is not None:
                return best
        return 0.0


def _ffmpeg_cut(
    src: str,
    dst: str,
    start: float,
    duration: float,
    mode: str,
    max_height: int,
    fps: float,
    crf: int,
    preset: str,
    audio: bool,
) -> None:
    source = ffmpeg.input(src, ss=f"{start:.6f}", t=f"{duration:.6f}")
    streams = [source["v:0"]]
    if mode == "copy":
        kwargs = {"c": "copy", "avoid_negative_ts": "make_zero"}
    else:
        video = (
            source["v:0"].filter("scale", w=-2, h=f"min(ih,{max_height})").filter("fps", fps=fps)
        )
        streams = [video]
        kwargs = {
            "vcodec": "libx264",
            "crf": crf,
            "preset": preset,
            "pix_fmt": "yuv420p",
            "x264-params": "log-level=error",
            # the output's own limit too: with an edit list (a fetched section) the input's -t
            # alone lets the fps filter emit one frame past the span
            "t": f"{duration:.6f}",
        }
        if audio:
            kwargs.update({"acodec": "aac", "b:a": "128k"})
    if audio:
        streams.append(source["a:0"])
    else:
        kwargs["an"] = None
    out = ffmpeg.output(*streams, dst, movflags="+faststart", f="mp4", **kwargs)
    try:
        out.run(cmd=ffmpeg_binary(), overwrite_output=True, quiet=True)
    except ffmpeg.Error as err:
        tail = (err.stderr or b"").decode(errors="replace").strip().splitlines()[-3:]
        raise MediaError(
            f"ffmpeg failed cutting {start:.2f}+{duration:.2f}s: {' | '.join(tail)}"
        ) from err


def sample_frames(path: str, count: int, height: int) -> tuple[list[bytes], dict]:
    """Decode a clip; return `count` JPEG frames sampled evenly and what the decode measured.

    Only the picked frames are converted; the rest are decoded and dropped.
    """
    with av.open(path) as container:
        if not container.streams.video:
            raise MediaError("the cut clip holds no video: does the span lie past the video's end?")
        stream = container.streams.video[0]
        origin = _container_start(container)
        pts = sorted(p.pts for p in container.demux(stream) if p.pts is not None)
        if not pts:
            raise MediaError("the cut clip holds no video packets")
        picks = set(np.linspace(0, len(pts) - 1, num=min(count, len(pts))).round().astype(int))
        container.seek(0)
        times, jpegs, size = [], [], (0, 0)
        for index, frame in enumerate(container.decode(stream)):
            times.append(frame_time(frame, origin))
            size = (frame.width, frame.height)
            if index in picks:
                out_h = min(height, frame.height)
                out_w = max(2, round(frame.width * out_h / frame.height))
                buf = io.BytesIO()
                rgb = frame.to_ndarray(width=out_w, height=out_h, format="rgb24")
                Image.fromarray(rgb).save(buf, format="JPEG", quality=90)
                jpegs.append(buf.getvalue())
        if not times:
            raise MediaError("the cut clip holds no decodable frame")
        fps = float(stream.average_rate or stream.guessed_rate or 0) or 25.0
        measured = {
            "frames": len(times),
            "fps": fps,
            "duration_s": (times[-1] - times[0]) + 1.0 / fps,
            "width": size[0],
            "height": size[1],
        }
        return jpegs, measured


def cut_clip(
    src: str,
    start: float,
    end: float,
    mode: str = "reencode",
    max_height: int = 360,
    fps: float = 25.0,
    crf: int = 23,
    preset: str = "veryfast",
    keep_audio: bool = True,
    frames: int = 8,
    frame_height: int = 224,
) -> Clip:
    """Cut [start, end) of src and verify it; raises MediaError when the cut is unusable."""
    if end <= start:
        raise ValueError(f"empty span [{start}, {end})")
    info = probe(src)
    audio = keep_audio and info.has_audio
    with tempfile.TemporaryDirectory(prefix="vcc-cut-") as tmp:
        dst = os.path.join(tmp, "clip.mp4")
        _ffmpeg_cut(src, dst, start, end - start, mode, max_height, fps, crf, preset, audio)
        jpegs, measured = sample_frames(dst, frames, frame_height)
        with open(dst, "rb") as fh:
            data = fh.read()
    real_start = keyframe_at_or_before(src, start) if mode == "copy" else start
    if real_start + measured["duration_s"] <= start:
        raise MediaError(
            f"the cut clip ends at {real_start + measured['duration_s']:.2f}s, before the span's "
            f"start {start:.2f}s: the span lies past the video's end"
        )
    return Clip(
        data=data,
        start_s=real_start,
        end_s=real_start + measured["duration_s"],
        width=measured["width"],
        height=measured["height"],
        fps=measured["fps"],
        duration_s=measured["duration_s"],
        frames=jpegs,
    )
