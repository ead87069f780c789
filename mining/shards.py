"""The shard format: its schema, an atomic writer with per-shard stats, a validating reader."""

from __future__ import annotations

import glob
import logging
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from mining import atomic

log = logging.getLogger(__name__)

SCHEMA_VERSION = "2"

SHARD_SCHEMA = pa.schema(
    [
        pa.field("clip_id", pa.string()),
        pa.field("video_id", pa.string()),
        pa.field("video_url", pa.string()),
        pa.field("start_s", pa.float64()),
        pa.field("end_s", pa.float64()),
        pa.field("match_t_s", pa.float64()),
        pa.field("caption", pa.string()),
        pa.field("image_key", pa.string()),
        pa.field("similarity", pa.float32()),
        pa.field("clip", pa.binary()),
        pa.field("frames", pa.list_(pa.binary())),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("fps", pa.float32()),
        pa.field("duration_s", pa.float32()),
        # version 2
        pa.field("cut_mode", pa.string()),  # reencode (frame-accurate) or copy (from a keyframe)
        pa.field("from_section", pa.bool_()),  # cut from a fetched section, not a whole file
    ]
)

# columns that shards of version 1 lack; readers take those shards without them
ADDED_AFTER_V1 = frozenset({"cut_mode", "from_section"})
# the contract of DESIGN.md (version 1): every shard has these
CONTRACT_COLUMNS = tuple(f.name for f in SHARD_SCHEMA if f.name not in ADDED_AFTER_V1)


class ShardError(ValueError):
    """A shard whose schema is not the shard schema."""


def shard_name(group: int) -> str:
    return f"shard-{group:05d}.parquet"


def stats_name(group: int) -> str:
    return f"shard-{group:05d}.stats.json"


def write_shard(
    folder: str | Path,
    group: int,
    rows: list[dict],
    stats: dict,
    run_id: str,
    compression: str = "zstd",
) -> Path:
    """Write one shard and its stats atomically; the shard's rename is the commit point.

    The stats JSON is written first, so a shard file never exists without its stats.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows, schema=SHARD_SCHEMA)
    table = table.replace_schema_metadata(
        {"vcc.schema_version": SCHEMA_VERSION, "vcc.run_id": run_id}
    )
    stats = {**stats, "rows": table.num_rows, "bytes_clips": sum(len(r["clip"]) for r in rows)}
    atomic.write_json(folder / stats_name(group), stats)
    path = folder / shard_name(group)
    atomic.write_parquet(path, table, None if compression == "none" else compression)
    return path


def shard_paths(path: str | Path) -> list[str]:
    """Shard files under a run's output root, a shards folder, a file or a glob."""
    path = str(path)
    if any(ch in path for ch in "*?["):
        return sorted(glob.glob(path))
    if os.path.isfile(path):
        return [path]
    folder = Path(path) / "shards" if (Path(path) / "shards").is_dir() else Path(path)
    return sorted(str(p) for p in folder.glob("shard-*.parquet"))


def schema_problems(schema: pa.Schema) -> list[str]:
    """Shard columns that are missing or of another type; extra columns are fine.

    Columns added after version 1 may be missing (older shards); present, they are checked.
    """
    problems = []
    for expected in SHARD_SCHEMA:
        if expected.name not in schema.names:
            if expected.name not in ADDED_AFTER_V1:
                problems.append(f"missing column {expected.name} ({expected.type})")
        elif (actual := schema.field(expected.name).type) != expected.type:
            problems.append(f"column {expected.name} is {actual}, expected {expected.type}")
    return problems


def check_schema(schema: pa.Schema, where: str) -> None:
    """Raise ShardError naming every column that is missing or of another type."""
    if problems := schema_problems(schema):
        raise ShardError(f"{where}: {'; '.join(problems)}")


def read_shards(path: str | Path, columns: list[str] | None = None) -> pa.Table:
    """Read and schema-check every shard under path; raises ShardError if one is off."""
    files = shard_paths(path)
    if not files:
        raise ShardError(f"no shards under {path}")
    tables = []
    for file in files:
        check_schema(pq.read_schema(file), file)
        tables.append(pq.read_table(file, columns=columns))
    return pa.concat_tables(tables, promote_options="default")
