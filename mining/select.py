"""Choosing clip spans from frame-image matches, VideoCC-style.

A match is (video, frame time, image, score). Matches of one image in one shot make one
candidate, at its best frame. Candidates are taken best first while the per-image and per-video
caps allow. A span is `clip_seconds` around the matched frame, kept inside its shot and the video.

Shot bounds may be uncertain: a boundary is an interval (lo, hi] known to hold the cut. The span
planned here is therefore bounded by the widest shot the boundaries allow; `bound_span` narrows
it once the cut task has found the exact cut times.
"""

from __future__ import annotations

import bisect
import hashlib
from dataclasses import dataclass


@dataclass(frozen=True)
class VideoShots:
    """Cut intervals of one video, sorted, and its duration."""

    boundaries: list[tuple[float, float]]
    duration_s: float
    fps: float

    def shot_of(self, t: float) -> int:
        """Index of the shot holding a sampled frame at t (frames never fall inside (lo, hi))."""
        return bisect.bisect_right([hi for _, hi in self.boundaries], t + 1e-6)

    def shot_limits(self, shot: int) -> tuple[tuple[float, float], tuple[float, float]]:
        """((start_lo, start_hi), (end_lo, end_hi)) of a shot: each interval holds its cut."""
        start = self.boundaries[shot - 1] if shot > 0 else (0.0, 0.0)
        end = self.boundaries[shot] if shot < len(self.boundaries) else (self.duration_s,) * 2
        return start, end


def select_spans(
    matches: dict[str, list[tuple[float, str, float]]],
    shots: dict[str, VideoShots],
    clip_seconds: float = 10.0,
    min_clip_seconds: float = 1.0,
    max_clips_per_image: int = 10,
    max_clips_per_video: int = 50,
) -> tuple[list[dict], dict[str, int]]:
    """Pick spans from matches.

    Args:
        matches: video_id -> [(t_s, image_key, score)].
        shots: video_id -> its cut intervals and duration.
    Returns:
        (spans, dropped): spans sorted by video and time, each with video_id, image_key,
        match_t_s, similarity, shot limits and the widest span; dropped counts candidates by why.
    """
    half = clip_seconds / 2.0
    candidates: dict[tuple[str, str, int], tuple[float, float]] = {}
    for video_id in sorted(matches):
        video = shots[video_id]
        for t, image_key, score in matches[video_id]:
            slot = (video_id, image_key, video.shot_of(t))
            best = candidates.get(slot)
            if best is None or (score, -t) > (best[1], -best[0]):
                candidates[slot] = (t, score)

    dropped = {"shot_too_short": 0, "image_cap": 0, "video_cap": 0}
    per_image: dict[str, int] = {}
    per_video: dict[str, int] = {}
    spans = []
    ranked = sorted(candidates.items(), key=lambda kv: (-kv[1][1], kv[0][0], kv[1][0], kv[0][1]))
    for (video_id, image_key, shot), (t, score) in ranked:
        video = shots[video_id]
        (start_lo, start_hi), (end_lo, end_hi) = video.shot_limits(shot)
        widest_start = max(t - half, start_lo, 0.0)
        widest_end = min(t + half, end_hi, video.duration_s)
        if widest_end - widest_start < min_clip_seconds:
            dropped["shot_too_short"] += 1
            continue
        if per_image.get(image_key, 0) >= max_clips_per_image:
            dropped["image_cap"] += 1
            continue
        if per_video.get(video_id, 0) >= max_clips_per_video:
            dropped["video_cap"] += 1
            continue
        per_image[image_key] = per_image.get(image_key, 0) + 1
        per_video[video_id] = per_video.get(video_id, 0) + 1
        spans.append(
            {
                "video_id": video_id,
                "image_key": image_key,
                "match_t_s": t,
                "similarity": float(score),
                "shot": shot,
                "shot_start_lo": start_lo,
                "shot_start_hi": start_hi,
                "shot_end_lo": end_lo,
                "shot_end_hi": end_hi,
                "video_duration_s": video.duration_s,
                "video_fps": video.fps,
                "plan_start_s": widest_start,
                "plan_end_s": widest_end,
            }
        )
    spans.sort(key=lambda s: (s["video_id"], s["match_t_s"], s["image_key"]))
    return spans, dropped


def bound_span(
    span: dict, clip_seconds: float, shot_start: float, shot_end: float
) -> tuple[float, float]:
    """The final span: `clip_seconds` around the match, inside its shot and the video."""
    half = clip_seconds / 2.0
    t = span["match_t_s"]
    start = max(t - half, shot_start, 0.0)
    end = min(t + half, shot_end, span["video_duration_s"])
    return start, end


def needs_refinement(lo: float, hi: float, fps: float) -> bool:
    """A boundary interval wider than about a frame does not pin the cut down."""
    frame = 1.0 / fps if fps > 0 else 0.04
    return hi - lo > 1.5 * frame


def plan_groups(
    spans: list[dict], max_rows: int, max_bytes: int, bytes_per_second: float
) -> list[int]:
    """Assign spans (in order) to shard groups bounded by rows and estimated bytes."""
    groups = []
    group, rows, size = 0, 0, 0.0
    for span in spans:
        estimate = (span["plan_end_s"] - span["plan_start_s"]) * bytes_per_second
        if rows and (rows + 1 > max_rows or size + estimate > max_bytes):
            group, rows, size = group + 1, 0, 0.0
        groups.append(group)
        rows += 1
        size += estimate
    return groups


def clip_id(video_id: str, start_s: float, end_s: float, caption: str) -> str:
    """Deterministic: the same video, span (to the millisecond) and caption give the same id."""
    key = f"{video_id}\x1f{round(start_s * 1000)}\x1f{round(end_s * 1000)}\x1f{caption}"
    return hashlib.sha1(key.encode()).hexdigest()[:20]


__all__ = ["VideoShots", "select_spans", "bound_span", "needs_refinement", "plan_groups", "clip_id"]
