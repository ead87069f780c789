"""`vcc videocc`: rebuild a published VideoCC CSV as shards of the shard schema.

The published CSV has no header and four columns a row: the YouTube id, the clip's start and
end in microseconds, and its caption. Each row's span is fetched as a section of its video
(yt-dlp download ranges; `fetch.url_template` turns the id into a URL) and cut as mining cuts
its clips: re-encoded frame-accurately, or stream-copied from the keyframe before. The rows
have no caption image: `image_key` is empty and `similarity` is NaN.

A bad row (not four fields, a time that is not a number, an end before its start) is recorded
as failed with its line; a row whose fetch or cut fails is recorded in its shard's stats. A
rerun on the same OUT writes only the shards that are missing.
"""

from __future__ import annotations

import csv
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from mining.atomic import write_json, write_parquet
from mining.images import InputError
from mining.urls import check_urls
from mining.videos import safe_id
from pipeline.config import MineConfig
from pipeline.mine import check_run, cut_spans, init_ray, plan_shards, prepare, read_shard_stats
from pipeline.store import OutputRoot

log = logging.getLogger(__name__)


@dataclass
class VideoCCRows:
    spans: list[dict]
    failed: list[dict]  # {"line", "error"}


def read_videocc_csv(path: str, url_template: str) -> VideoCCRows:
    """The CSV's rows as exact spans to cut; malformed rows as failures with their line."""
    if not Path(path).is_file():
        raise InputError(f"VideoCC CSV {path} does not exist")
    spans, failed = [], []
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            for line, fields in enumerate(csv.reader(fh), start=1):
                if not fields or all(not f.strip() for f in fields):
                    continue
                try:
                    spans.append(_span(fields, url_template))
                except ValueError as err:
                    failed.append({"line": line, "error": str(err)})
    except (UnicodeDecodeError, csv.Error) as err:
        raise InputError(f"VideoCC CSV {path} is not a readable UTF-8 CSV: {err}") from err
    if not spans:
        first = f": line {failed[0]['line']}: {failed[0]['error']}" if failed else ""
        raise InputError(
            f"VideoCC CSV {path} has no usable row{first}. Each row is: YouTube id, start in "
            "microseconds, end in microseconds, caption (no header)"
        )
    return VideoCCRows(spans, failed)


def _span(fields: list[str], url_template: str) -> dict:
    if len(fields) != 4:
        raise ValueError(f"{len(fields)} fields, expected 4 (id, start_us, end_us, caption)")
    youtube_id, start_us, end_us, caption = (f.strip() for f in fields)
    try:
        start, end = int(start_us) / 1e6, int(end_us) / 1e6
    except ValueError:
        raise ValueError(f"start {start_us!r} and end {end_us!r} must be microseconds") from None
    if not youtube_id or not caption:
        raise ValueError("an empty id or caption")
    if start < 0 or end <= start:
        raise ValueError(f"the span {start:.3f}-{end:.3f}s is empty or negative")
    return {
        "exact": True,
        "video_id": safe_id(youtube_id),
        "video_url": url_template.format(id=youtube_id),
        "path": None,
        "start_s": start,
        "end_s": end,
        "match_t_s": (start + end) / 2,
        "plan_start_s": start,
        "plan_end_s": end,
        "caption": caption,
        "image_key": "",
        "similarity": float("nan"),
    }


def redownload(csv_path: str, out: str, cfg: MineConfig) -> dict:
    """Fetch and cut every row of a VideoCC CSV into shards under OUT; returns the stats."""
    started = time.perf_counter()
    rows = read_videocc_csv(csv_path, cfg.fetch.url_template)
    check_urls(sorted({s["video_url"] for s in rows.spans}), cfg.fetch.allow_private)
    root = OutputRoot(out)
    run = check_run(root, cfg, {"videocc": csv_path})
    prepare(root)
    init_ray(cfg.ray)
    run.update({"run_id": run["fingerprint"], "videocc": {"rows": len(rows.spans)}})
    write_json(root.run_json, run)

    # a video's rows together, so that one task fetches its sections
    spans = sorted(rows.spans, key=lambda s: (s["video_id"], s["start_s"], s["end_s"]))
    for span, group in zip(spans, plan_shards(cfg, spans)):
        span["group"] = group
    write_parquet(root.spans, pa.Table.from_pylist(spans))
    cut_spans(cfg, root, spans, run["run_id"])

    shard_stats = read_shard_stats(root)
    stats = {
        "rows": len(rows.spans) + len(rows.failed),
        "rows_malformed": rows.failed,
        "clips": sum(s["rows"] for s in shard_stats),
        "clips_failed": [f for s in shard_stats for f in s["failures"]],
        "shards": len(shard_stats),
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_json(root.stats, stats)
    return stats
