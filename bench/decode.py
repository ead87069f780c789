"""Decode: `decode_frames` keyframe and 1 fps rates against ffmpeg decoding the same file.

Baselines, run interleaved with the measured modes in the same process:

* `ffmpeg -i FILE -f null -`: a full decode of every frame (what fps mode must do anyway);
* `ffmpeg -skip_frame nokey -i FILE -f null -`: a keyframe-only decode (what keyframes mode
  asks the decoder for).

ffmpeg's numbers include its process start (about 0.05 s); decode_frames' numbers include its
probe, the per-frame cut signature and the RGB conversion to `frame_height` it hands downstream.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from common import (
    Interleaved,
    corpus_videos,
    long_video,
    rate,
    read_into_page_cache,
    video_seconds,
)

from mining.keyframes import decode_frames
from mining.media import ffmpeg_binary, probe

REPEATS = 5


def _decode_all(paths: list[Path], mode: str) -> dict[str, int]:
    frames = boundaries = 0
    for path in paths:
        for chunk in decode_frames(str(path), mode=mode, fps=1.0):
            frames += len(chunk.times)
            boundaries += len(chunk.boundaries)
    return {"frames": frames, "boundaries": boundaries}


def _ffmpeg_null(paths: list[Path], keyframes_only: bool) -> None:
    for path in paths:
        command = [ffmpeg_binary(), "-hide_banner", "-nostdin", "-loglevel", "error"]
        if keyframes_only:
            command += ["-skip_frame", "nokey"]
        command += ["-i", str(path), "-an", "-f", "null", "-"]
        subprocess.run(command, check=True)


def _measure(name: str, paths: list[Path], repeats: int) -> dict[str, Any]:
    seconds = video_seconds(paths)
    read_into_page_cache(paths)
    info = probe(str(paths[0]))
    runs = Interleaved().run(
        {
            "decode_frames_keyframes": lambda: _decode_all(paths, "keyframes"),
            "ffmpeg_full": lambda: _ffmpeg_null(paths, keyframes_only=False),
            "ffmpeg_nokey": lambda: _ffmpeg_null(paths, keyframes_only=True),
            "decode_frames_fps1": lambda: _decode_all(paths, "fps"),
        },
        repeats,
    )
    keyframes = runs.result("decode_frames_keyframes")["frames"]
    fps_frames = runs.result("decode_frames_fps1")["frames"]
    kf, fps1 = runs.wall("decode_frames_keyframes"), runs.wall("decode_frames_fps1")
    full, nokey = runs.wall("ffmpeg_full"), runs.wall("ffmpeg_nokey")
    return {
        "input": name,
        "files": len(paths),
        "video_s": round(seconds, 2),
        "size": f"{info.width}x{info.height}",
        "fps": info.fps,
        "keyframes": keyframes,
        "fps1_frames": fps_frames,
        "keyframes_mode": {
            **runs.summary("decode_frames_keyframes"),
            "keyframes_per_s": rate(keyframes, kf),
            "video_s_per_s": rate(seconds, kf),
        },
        "fps1_mode": {
            **runs.summary("decode_frames_fps1"),
            "frames_per_s": rate(fps_frames, fps1),
            "video_s_per_s": rate(seconds, fps1),
        },
        "ffmpeg_full": {**runs.summary("ffmpeg_full"), "video_s_per_s": rate(seconds, full)},
        "ffmpeg_nokey": {
            **runs.summary("ffmpeg_nokey"),
            "keyframes_per_s": rate(keyframes, nokey),
            "video_s_per_s": rate(seconds, nokey),
        },
        # speed of decode_frames relative to the ffmpeg baseline: > 1 is faster than ffmpeg
        "ratio_keyframes_vs_ffmpeg_nokey": round(nokey / kf, 3),
        "ratio_keyframes_vs_ffmpeg_full": round(full / kf, 3),
        "ratio_fps1_vs_ffmpeg_full": round(full / fps1, 3),
        "contention": runs.contention(),
    }


def run(repeats: int = REPEATS) -> dict[str, Any]:
    """Decode figures for the long 720p video and for the whole demo corpus."""
    return {
        "long720p": _measure("long720p (120 s, 1280x720, GOP 50)", [long_video()], repeats),
        "corpus": _measure("demo corpus (6 x 40 s, 480x270)", corpus_videos(), repeats),
    }
