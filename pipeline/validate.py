"""`vcc inspect --validate`: check every shard against the shard contract.

Per shard: the contract's columns with their types (columns added later are type-checked when
present; unknown extra columns are fine). Per row: the clip decodes with PyAV, is not truncated,
and its decoded span matches the row's `end_s - start_s` and `duration_s` and its size `width`
and `height`; every JPEG frame decodes; the span is ordered, holds the matched time and lies
within the source video (its duration from the manifest, else a probe of the source file).
Across shards: every clip_id is unique. Each problem names the shard, the row and why.
"""

from __future__ import annotations

import io
import logging
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import av
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from mining.media import MediaError, probe
from mining.shards import CONTRACT_COLUMNS, schema_problems
from pipeline.inspect import RunView

log = logging.getLogger(__name__)

# slack on time comparisons beyond one frame: float rounding in probes and in the rows
EPS_S = 1e-3

CHECKED_COLUMNS = list(CONTRACT_COLUMNS)


@dataclass(frozen=True)
class Problem:
    """One thing wrong: where (shard file, row, clip id) and why."""

    shard: str
    row: int | None
    clip_id: str | None
    reason: str

    def __str__(self) -> str:
        where = self.shard if self.row is None else f"{self.shard} row {self.row}"
        if self.clip_id:
            where += f" (clip {self.clip_id})"
        return f"{where}: {self.reason}"


@dataclass(frozen=True)
class Source:
    """What the span check knows of a source video."""

    duration_s: float
    fps: float


@dataclass(frozen=True)
class Decoded:
    """What decoding a whole clip measured, and the duration its container declares."""

    duration_s: float
    declared_s: float | None
    fps: float
    frames: int
    width: int
    height: int


def decode_clip(clip: bytes) -> Decoded:
    """Decode every frame of a clip's first video stream; raises MediaError when none decodes."""
    try:
        with av.open(io.BytesIO(clip)) as container:
            if not container.streams.video:
                raise MediaError("the clip holds no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            declared = float(stream.duration * stream.time_base) if stream.duration else None
            times, size = [], (0, 0)
            for frame in container.decode(stream):
                if frame.pts is not None:
                    times.append(float(frame.pts * frame.time_base))
                size = (frame.width, frame.height)
            fps = float(stream.average_rate or stream.guessed_rate or 0) or 25.0
    except av.FFmpegError as err:
        raise MediaError(f"decoding fails: {err}") from err
    if not times:
        raise MediaError("no frame decodes")
    duration = max(times) - min(times) + 1.0 / fps
    return Decoded(duration, declared, fps, len(times), size[0], size[1])


def clip_problems(row: dict) -> list[str]:
    """What is wrong with one row's clip: truncation, and its span and size against the row."""
    try:
        clip = decode_clip(row["clip"])
    except MediaError as err:
        return [f"clip does not decode: {err}"]
    problems = []
    tolerance = 1.0 / clip.fps + EPS_S
    if clip.declared_s is not None and clip.duration_s < clip.declared_s - tolerance:
        problems.append(
            f"clip is truncated: its container declares {clip.declared_s:.3f}s but only "
            f"{clip.duration_s:.3f}s ({clip.frames} frames) decode"
        )
    span = row["end_s"] - row["start_s"]
    if abs(clip.duration_s - span) > tolerance:
        problems.append(
            f"clip decodes to {clip.duration_s:.3f}s but the row's span end_s - start_s is "
            f"{span:.3f}s"
        )
    if abs(clip.duration_s - row["duration_s"]) > tolerance:
        problems.append(
            f"clip decodes to {clip.duration_s:.3f}s but the row's duration_s is "
            f"{row['duration_s']:.3f}s"
        )
    if (clip.width, clip.height) != (row["width"], row["height"]):
        problems.append(
            f"clip is {clip.width}x{clip.height} but the row says {row['width']}x{row['height']}"
        )
    return problems


def frame_problems(frames: list[bytes] | None) -> list[str]:
    if not frames:
        return ["the row has no frames"]
    problems = []
    for i, data in enumerate(frames):
        try:
            with Image.open(io.BytesIO(data)) as image:
                image.load()
        except Exception as err:  # noqa: BLE001 - Pillow raises several kinds for bad bytes
            problems.append(f"frame {i} does not decode: {type(err).__name__}: {err}")
    return problems


def span_problems(row: dict, source: Source | None) -> list[str]:
    """The span's order, the matched time inside it, and the span within its source video."""
    start, end, match_t = row["start_s"], row["end_s"], row["match_t_s"]
    if not all(math.isfinite(x) for x in (start, end, match_t)):
        return [f"span {start}-{end}s or match time {match_t}s is not finite"]
    problems = []
    if not end > start:
        problems.append(f"span {start:.3f}-{end:.3f}s is empty or reversed")
    tolerance = (1.0 / source.fps if source and source.fps else 0.0) + EPS_S
    if start < -tolerance:
        problems.append(f"span starts at {start:.3f}s, before the video's start")
    if not start - tolerance <= match_t <= end + tolerance:
        problems.append(f"matched time {match_t:.3f}s lies outside the span {start:.3f}-{end:.3f}s")
    if source is not None and end > source.duration_s + tolerance:
        problems.append(f"span ends at {end:.3f}s, past the video's end ({source.duration_s:.3f}s)")
    return problems


def check_row(row: dict, source: Source | None) -> list[str]:
    return [*span_problems(row, source), *clip_problems(row), *frame_problems(row["frames"])]


def _local_path(url: str | None) -> str | None:
    if not url:
        return None
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return unquote(parsed.path)
    return url if parsed.scheme == "" else None


class Sources:
    """Source durations: the manifest's, else a probe of a local source file, else unknown."""

    def __init__(self, manifest: dict[str, dict]) -> None:
        self._known: dict[str, Source | None] = {
            vid: Source(float(e["duration_s"]), float(e.get("fps") or 0.0))
            for vid, e in manifest.items()
            if e.get("status") == "done" and e.get("duration_s") is not None
        }

    def get(self, video_id: str, video_url: str | None) -> Source | None:
        if video_id not in self._known:
            path = _local_path(video_url)
            source = None
            if path and Path(path).is_file():
                try:
                    info = probe(path)
                    source = Source(info.duration_s, info.fps)
                except MediaError:
                    source = None
            self._known[video_id] = source
        return self._known[video_id]

    def unchecked(self) -> list[str]:
        """Videos whose duration is unknown, so their spans' ends were not checked."""
        return sorted(v for v, s in self._known.items() if s is None)


def validate_shard(file: str, sources: Sources, workers: int = 2) -> tuple[list[Problem], list]:
    """Problems of one shard, and its (clip_id, row) pairs for the cross-shard id check."""
    name = Path(file).name
    try:
        schema = pq.read_schema(file)
    except (pa.ArrowException, OSError) as err:
        return [Problem(name, None, None, f"not readable Parquet: {err}")], []
    if problems := schema_problems(schema):
        return [Problem(name, None, None, p) for p in problems], []
    rows = pq.read_table(file, columns=CHECKED_COLUMNS).to_pylist()
    located = [(row, sources.get(row["video_id"], row["video_url"])) for row in rows]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        reasons = list(pool.map(lambda pair: check_row(*pair), located))
    out = [
        Problem(name, i, row["clip_id"], reason)
        for i, (row, found) in enumerate(zip(rows, reasons))
        for reason in found
    ]
    return out, [(row["clip_id"], i) for i, row in enumerate(rows)]


def validate(view: RunView, workers: int = 2) -> tuple[list[Problem], dict]:
    """Every problem in every shard of the view, and counts of what was checked."""
    sources = Sources(view.manifest())
    problems: list[Problem] = []
    first_seen: dict[str, tuple[str, int]] = {}
    rows = 0
    for file in view.files:
        found, ids = validate_shard(file, sources, workers)
        problems.extend(found)
        name = Path(file).name
        for clip_id, row in ids:
            rows += 1
            if not clip_id:
                problems.append(Problem(name, row, clip_id, "empty clip_id"))
            elif clip_id in first_seen:
                other, other_row = first_seen[clip_id]
                problems.append(
                    Problem(name, row, clip_id, f"duplicate clip_id: also {other} row {other_row}")
                )
            else:
                first_seen[clip_id] = (name, row)
        log.debug("validated %s: %d problems", name, len(found))
    checked = {
        "shards": len(view.files),
        "rows": rows,
        "spans_unchecked_videos": sources.unchecked(),
    }
    return problems, checked


def format_validation(problems: list[Problem], checked: dict) -> str:
    head = f"validated {checked['shards']} shards, {checked['rows']} clips: "
    lines = [head + (f"{len(problems)} problems" if problems else "all good")]
    lines.extend(f"  {p}" for p in problems)
    if checked["spans_unchecked_videos"]:
        lines.append(
            "  note: no duration known for videos "
            + ", ".join(checked["spans_unchecked_videos"])
            + " (no manifest entry, no local source): their spans' ends were not checked"
        )
    return "\n".join(lines)
