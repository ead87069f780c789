"""Cut: `mining.cut.cut_clip` in re-encode mode against copy mode on the demo corpus.

Both modes cut the same spans of 5 s (seeded, spread over the six corpus videos) with the
default cut settings (max height 360, 25 fps, crf 23, veryfast, audio kept where there is some,
8 JPEG frames of 224 px). A call covers ffmpeg's cut, the probe and the frame sampling of the
clip, and in copy mode the search for the keyframe the copy really starts at.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from common import Interleaved, corpus_videos, rate

from mining.cut import Clip, cut_clip
from mining.media import probe

REPEATS = 3
SPANS = 20
SPAN_S = 5.0


def _spans(videos: list[Path], count: int, seconds: float) -> list[tuple[str, float, float]]:
    rng = np.random.default_rng(0)
    spans = []
    for i in range(count):
        path = str(videos[i % len(videos)])
        start = float(rng.uniform(0.5, probe(path).duration_s - seconds - 0.5))
        spans.append((path, round(start, 3), round(start + seconds, 3)))
    return spans


def run(repeats: int = REPEATS, count: int = SPANS) -> dict[str, Any]:
    spans = _spans(corpus_videos(), count, SPAN_S)

    def cut_all(mode: str) -> list[Clip]:
        return [cut_clip(path, start, end, mode=mode) for path, start, end in spans]

    runs = Interleaved().run(
        {"reencode": lambda: cut_all("reencode"), "copy": lambda: cut_all("copy")}, repeats
    )
    out: dict[str, Any] = {"spans": len(spans), "span_s": SPAN_S, "videos": len(corpus_videos())}
    for mode in ("reencode", "copy"):
        clips: list[Clip] = runs.result(mode)
        wall = runs.wall(mode)
        real_s = sum(c.duration_s for c in clips)
        out[mode] = {
            **runs.summary(mode),
            "clips_per_s": rate(len(clips), wall),
            "requested_clip_s_per_s": rate(len(clips) * SPAN_S, wall),
            "real_clip_s": round(real_s, 2),
            "real_clip_s_per_s": rate(real_s, wall),
            "clip_mb": round(sum(len(c.data) for c in clips) / 2**20, 2),
            "start_error_s_max": round(max(abs(c.start_s - s[1]) for c, s in zip(clips, spans)), 3),
        }
    # how many times faster copy mode cuts than re-encode mode (clips per second)
    out["ratio_copy_vs_reencode"] = round(runs.wall("reencode") / runs.wall("copy"), 3)
    out["contention"] = runs.contention()
    return out
