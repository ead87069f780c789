"""Listing the local video corpus: a folder, a glob, or a table of paths."""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path

import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from mining.images import InputError

VIDEO_SUFFIXES = {".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v", ".ts", ".flv", ".mpg", ".mpeg"}
TABLE_SUFFIXES = {".parquet", ".csv", ".tsv", ".txt"}
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_id(text: str) -> str:
    """A video id that is safe as a file name (the id is also the manifest's file name)."""
    cleaned = _UNSAFE.sub("_", text).strip("._")
    return cleaned[:128] or "video"


def _from_table(path: str) -> list[dict]:
    suffix = Path(path).suffix.lower()
    if suffix == ".parquet":
        table = pq.read_table(path)
    elif suffix == ".txt":
        lines = [ln.strip() for ln in Path(path).read_text().splitlines()]
        return [{"path": ln} for ln in lines if ln and not ln.startswith("#")]
    else:
        delimiter = "\t" if suffix == ".tsv" else ","
        table = pcsv.read_csv(path, parse_options=pcsv.ParseOptions(delimiter=delimiter))
    column = (
        "path" if "path" in table.column_names else "url" if "url" in table.column_names else None
    )
    if column is None:
        raise InputError(f"video table {path} needs a `path` column (got {table.column_names})")
    rows = table.to_pylist()
    return [{"path": r[column], "video_id": r.get("video_id")} for r in rows]


def list_videos(spec: str) -> list[dict]:
    """Resolve a video folder, glob or table into rows of video_id, path, video_url.

    Raises InputError when nothing usable is named. Ids are file stems unless the table gives
    `video_id`; a repeated id is suffixed with its position so that no video is lost.
    """
    if any(ch in spec for ch in "*?["):
        entries = [
            {"path": p} for p in sorted(glob.glob(spec, recursive=True)) if os.path.isfile(p)
        ]
        if not entries:
            raise InputError(f"video glob {spec!r} matches no files")
    elif os.path.isdir(spec):
        entries = [
            {"path": str(p)}
            for p in sorted(Path(spec).rglob("*"))
            if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES
        ]
        if not entries:
            raise InputError(
                f"video folder {spec} holds no video files ({', '.join(sorted(VIDEO_SUFFIXES))})"
            )
    elif os.path.isfile(spec) and Path(spec).suffix.lower() in TABLE_SUFFIXES:
        entries = _from_table(spec)
        if not entries:
            raise InputError(f"video table {spec} lists no videos")
        base = Path(spec).parent
        for entry in entries:
            if "://" in str(entry["path"]):
                raise InputError(
                    f"video table {spec} lists a URL ({entry['path']}); fetching URLs is not "
                    "supported yet: download the videos and list their paths"
                )
            if not os.path.isabs(entry["path"]):
                entry["path"] = str(base / entry["path"])
    elif os.path.isfile(spec):
        entries = [{"path": spec}]
    else:
        raise InputError(f"videos {spec} do not exist (give a folder, a glob, or a table of paths)")

    videos: list[dict] = []
    seen: set[str] = set()
    for position, entry in enumerate(entries):
        video_id = safe_id(str(entry.get("video_id") or Path(entry["path"]).stem))
        stem, suffix = video_id, position
        while video_id in seen:
            video_id = f"{stem}-{suffix}"
            suffix += 1
        seen.add(video_id)
        path = os.path.abspath(entry["path"])
        videos.append({"video_id": video_id, "path": path, "video_url": Path(path).as_uri()})
    return videos
