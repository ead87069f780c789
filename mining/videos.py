"""Listing the video corpus: a folder, a glob, or a table of paths or URLs."""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from mining.images import InputError

VIDEO_SUFFIXES = {".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v", ".ts", ".flv", ".mpg", ".mpeg"}
TABLE_SUFFIXES = {".parquet", ".csv", ".tsv", ".txt"}
DEFAULT_URL_TEMPLATE = "https://www.youtube.com/watch?v={id}"
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
    names = table.column_names
    column = next((c for c in ("path", "url") if c in names), None)
    if column is None and "video_id" not in names:
        raise InputError(
            f"video table {path} needs a `path` or `url` column, or `video_id` (got {names})"
        )
    return [
        {"path": r.get(column) if column else None, "video_id": r.get("video_id")}
        for r in table.to_pylist()
    ]


def is_url(text: str) -> bool:
    return "://" in text


def _url_id(url: str) -> str:
    """A readable id for a URL: a YouTube-style `v=` parameter, else the last path part's stem."""
    parts = urlsplit(url)
    v = parse_qs(parts.query).get("v")
    if v and v[0]:
        return v[0]
    return Path(parts.path).stem or parts.hostname or "video"


def list_videos(spec: str, url_template: str = DEFAULT_URL_TEMPLATE) -> list[dict]:
    """Resolve a video folder, glob or table into rows of video_id, path, video_url.

    A table (Parquet, CSV, TSV, or TXT with one per line) lists paths or URLs (`path` or `url`
    column, optional `video_id`); a row with only `video_id` is the URL url_template names.
    URL rows have path None until they are fetched. Raises InputError when nothing usable is
    named. Ids are file stems, or for URLs a `v=` parameter or the path's stem, unless the table
    gives `video_id`; ids are made safe as file names, and a repeated id is suffixed with its
    position so that no video is lost.
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
        for position, entry in enumerate(entries):
            if not entry["path"]:
                if not entry.get("video_id"):
                    raise InputError(f"video table {spec}: row {position} has no path, url or id")
                entry["path"] = url_template.format(id=entry["video_id"])
            elif not is_url(entry["path"]) and not os.path.isabs(entry["path"]):
                entry["path"] = str(base / entry["path"])
    elif os.path.isfile(spec):
        entries = [{"path": spec}]
    else:
        raise InputError(f"videos {spec} do not exist (give a folder, a glob, or a table of paths)")

    videos: list[dict] = []
    seen: set[str] = set()
    for position, entry in enumerate(entries):
        where = str(entry["path"])
        remote = is_url(where)
        stem = _url_id(where) if remote else Path(where).stem
        video_id = safe_id(str(entry.get("video_id") or stem))
        stem, suffix = video_id, position
        while video_id in seen:
            video_id = f"{stem}-{suffix}"
            suffix += 1
        seen.add(video_id)
        if remote:
            # fetched before pass 1 (pipeline.fetching), which fills in `path`
            videos.append({"video_id": video_id, "path": None, "video_url": where})
        else:
            path = os.path.abspath(where)
            videos.append({"video_id": video_id, "path": path, "video_url": Path(path).as_uri()})
    return videos
