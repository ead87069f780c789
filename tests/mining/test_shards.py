"""mining.shards: the pinned shard schema, the atomic writer with stats, the validating reader."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mining.shards import (
    SCHEMA_VERSION,
    SHARD_SCHEMA,
    ShardError,
    read_shards,
    shard_paths,
    write_shard,
)

# DESIGN.md's shard table, written out by hand: later versions may only add columns
PINNED_COLUMNS = [
    ("clip_id", pa.string()),
    ("video_id", pa.string()),
    ("video_url", pa.string()),
    ("start_s", pa.float64()),
    ("end_s", pa.float64()),
    ("match_t_s", pa.float64()),
    ("caption", pa.string()),
    ("image_key", pa.string()),
    ("similarity", pa.float32()),
    ("clip", pa.binary()),
    ("frames", pa.list_(pa.binary())),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("fps", pa.float32()),
    ("duration_s", pa.float32()),
    ("cut_mode", pa.string()),
    ("from_section", pa.bool_()),
]


def _row(n: int, **changes) -> dict:
    row = {
        "clip_id": f"clip{n:03d}",
        "video_id": "vid000",
        "video_url": "file:///corpus/vid000.mp4",
        "start_s": 1.0 + n,
        "end_s": 3.5 + n,
        "match_t_s": 2.0 + n,
        "caption": f"caption {n}",
        "image_key": f"img{n:05d}",
        "similarity": 0.875,
        "clip": bytes([n]) * (100 + n),
        "frames": [b"\xff\xd8 jpeg one", b"\xff\xd8 jpeg two"],
        "width": 160,
        "height": 90,
        "fps": 25.0,
        "duration_s": 2.5,
        "cut_mode": "reencode",
        "from_section": False,
    }
    row.update(changes)
    return row


def test_shard_schema_is_pinned():
    assert [(f.name, f.type) for f in SHARD_SCHEMA] == PINNED_COLUMNS


def test_version_1_shards_still_read(tmp_path: Path):
    """Version 2 only added columns: a shard without them reads, and they come back null."""
    table = pa.Table.from_pylist([_row(1)], schema=SHARD_SCHEMA).drop_columns(
        ["cut_mode", "from_section"]
    )
    pq.write_table(table, tmp_path / "shard-00000.parquet")
    read = read_shards(tmp_path)
    assert read.num_rows == 1 and "cut_mode" not in read.column_names


def test_write_shard_schema_metadata_and_stats(tmp_path: Path):
    rows = [_row(0), _row(1), _row(2)]

    path = write_shard(tmp_path / "shards", 7, rows, {"failed": 1}, run_id="run-42")

    assert path == tmp_path / "shards" / "shard-00007.parquet"
    schema = pq.read_schema(path)
    assert schema.names == [name for name, _ in PINNED_COLUMNS]
    assert [(f.name, f.type) for f in schema] == PINNED_COLUMNS
    assert schema.metadata[b"vcc.schema_version"] == SCHEMA_VERSION.encode()
    assert schema.metadata[b"vcc.run_id"] == b"run-42"

    stats_path = tmp_path / "shards" / "shard-00007.stats.json"
    assert json.loads(stats_path.read_text()) == {"failed": 1, "rows": 3, "bytes_clips": 303}
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "shard-00007.parquet",
        "shard-00007.stats.json",
    ]


def test_write_then_read_round_trip(tmp_path: Path):
    rows = [_row(0), _row(1)]
    write_shard(tmp_path, 0, rows, {}, run_id="r")

    table = read_shards(tmp_path)

    assert table.num_rows == 2
    back = table.to_pylist()
    assert back[0]["clip"] == rows[0]["clip"]
    assert back[1]["frames"] == rows[1]["frames"]
    assert back[1]["start_s"] == 2.0 and back[1]["similarity"] == 0.875
    assert back[0]["width"] == 160


def test_write_empty_shard(tmp_path: Path):
    path = write_shard(tmp_path, 3, [], {"failed": 4}, run_id="r")

    assert pq.read_metadata(path).num_rows == 0
    assert [(f.name, f.type) for f in pq.read_schema(path)] == PINNED_COLUMNS
    assert json.loads((tmp_path / "shard-00003.stats.json").read_text())["rows"] == 0


def test_rewrite_replaces_and_leaves_no_temp_files(tmp_path: Path):
    write_shard(tmp_path, 0, [_row(0), _row(1)], {}, run_id="first")
    path = write_shard(tmp_path, 0, [_row(5)], {}, run_id="second")

    assert pq.read_table(path)["clip_id"].to_pylist() == ["clip005"]
    assert pq.read_schema(path).metadata[b"vcc.run_id"] == b"second"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "shard-00000.parquet",
        "shard-00000.stats.json",
    ]


@pytest.mark.parametrize("compression", ["zstd", "snappy", "none"])
def test_compression(tmp_path: Path, compression: str):
    path = write_shard(tmp_path, 0, [_row(0)], {}, run_id="r", compression=compression)

    expected = "UNCOMPRESSED" if compression == "none" else compression.upper()
    assert pq.read_metadata(path).row_group(0).column(0).compression == expected


def test_write_rejects_rows_off_the_schema(tmp_path: Path):
    with pytest.raises((pa.ArrowInvalid, pa.ArrowTypeError)):
        write_shard(tmp_path, 0, [_row(0, width="wide")], {}, run_id="r")
    assert not list(tmp_path.glob("shard-*.parquet"))


def test_read_from_run_root_folder_file_and_glob(tmp_path: Path):
    shards = tmp_path / "out" / "shards"
    write_shard(shards, 0, [_row(0)], {}, run_id="r")
    write_shard(shards, 1, [_row(1), _row(2)], {}, run_id="r")

    assert read_shards(tmp_path / "out").num_rows == 3
    assert read_shards(shards).num_rows == 3
    assert read_shards(shards / "shard-00001.parquet").num_rows == 2
    assert read_shards(str(shards / "shard-0000[0].parquet")).num_rows == 1
    assert shard_paths(shards) == [
        str(shards / "shard-00000.parquet"),
        str(shards / "shard-00001.parquet"),
    ]
    assert read_shards(shards, columns=["clip_id", "caption"]).column_names == [
        "clip_id",
        "caption",
    ]


def test_read_shards_of_different_runs(tmp_path: Path):
    write_shard(tmp_path, 0, [_row(0)], {}, run_id="a")
    write_shard(tmp_path, 1, [_row(1)], {}, run_id="b")

    assert read_shards(tmp_path)["clip_id"].to_pylist() == ["clip000", "clip001"]


def _write_altered(path: Path, table: pa.Table) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def test_read_rejects_a_wrong_column_type(tmp_path: Path):
    write_shard(tmp_path, 0, [_row(0)], {}, run_id="r")
    table = pa.Table.from_pylist([_row(1)], schema=SHARD_SCHEMA)
    position = table.schema.get_field_index("width")
    table = table.set_column(position, "width", table["width"].cast(pa.int64()))
    _write_altered(tmp_path / "shard-00001.parquet", table)

    with pytest.raises(ShardError, match="shard-00001.parquet: column width is int64") as err:
        read_shards(tmp_path)
    assert "expected int32" in str(err.value)


def test_read_rejects_a_missing_column(tmp_path: Path):
    table = pa.Table.from_pylist([_row(0)], schema=SHARD_SCHEMA).drop_columns(["frames"])
    _write_altered(tmp_path / "shard-00000.parquet", table)

    with pytest.raises(ShardError, match="shard-00000.parquet: missing column frames"):
        read_shards(tmp_path)


def test_read_rejects_frames_that_are_not_a_list(tmp_path: Path):
    table = pa.Table.from_pylist([_row(0)], schema=SHARD_SCHEMA)
    position = table.schema.get_field_index("frames")
    table = table.set_column(position, "frames", pa.array([b"one jpeg"], pa.binary()))
    _write_altered(tmp_path / "shard-00000.parquet", table)

    with pytest.raises(ShardError, match="column frames is binary"):
        read_shards(tmp_path)


def test_read_an_empty_folder_raises(tmp_path: Path):
    (tmp_path / "notes.txt").write_text("no shards")
    with pytest.raises(ShardError, match="no shards under"):
        read_shards(tmp_path)
    with pytest.raises(ShardError, match="no shards under"):
        read_shards(tmp_path / "missing")


def test_read_accepts_a_shard_with_an_added_column(tmp_path: Path):
    table = pa.Table.from_pylist([_row(0)], schema=SHARD_SCHEMA)
    table = table.append_column("aesthetic", pa.array([0.5], pa.float32()))
    _write_altered(tmp_path / "shard-00000.parquet", table)

    read = read_shards(tmp_path)

    assert read.num_rows == 1
    assert read.column_names[: len(PINNED_COLUMNS)] == [name for name, _ in PINNED_COLUMNS]


def test_read_mixes_shards_with_and_without_an_added_column(tmp_path: Path):
    write_shard(tmp_path, 0, [_row(0)], {}, run_id="v1")
    table = pa.Table.from_pylist([_row(1)], schema=SHARD_SCHEMA)
    table = table.append_column("aesthetic", pa.array([0.5], pa.float32()))
    _write_altered(tmp_path / "shard-00001.parquet", table)

    read = read_shards(tmp_path)

    assert read["clip_id"].to_pylist() == ["clip000", "clip001"]
