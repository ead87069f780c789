"""`vcc videocc`: a VideoCC-format CSV served on loopback becomes valid shards."""

from __future__ import annotations

import io
import math
from pathlib import Path

import pytest

from mining.images import InputError
from mining.media import probe
from mining.shards import read_shards, shard_paths
from pipeline.config import load_config
from pipeline.httpserver import FileServer
from pipeline.videocc import read_videocc_csv, redownload

ROWS = [
    'vid000,1000000,4500000,"a red kite, high over the field"',
    "vid001,2000000,6000000,two dogs on a beach",
    "vid000,8000000,11000000,a street at night",
    "gone,1000000,3000000,a video that was taken down",
    "vid000,abc,3000000,a start that is no number",
    "vid001,1000000,a caption without an end",
]


@pytest.fixture
def videocc_csv(tmp_path: Path) -> Path:
    path = tmp_path / "videocc.csv"
    path.write_text("\n".join(ROWS) + "\n")
    return path


def test_a_served_videocc_csv_becomes_shards(small_corpus, videocc_csv, tmp_path, ray_session):
    with FileServer(small_corpus) as server:
        template = server.url("videos/{id}.mp4")
        cfg = load_config(
            overrides=[
                "fetch.allow_private=true",
                f"fetch.url_template={template}",
                "shards.max_rows=2",
                "ray.num_cpus=2",
            ]
        )
        stats = redownload(str(videocc_csv), str(tmp_path / "out"), cfg)
        shards = {p: Path(p).stat().st_mtime_ns for p in shard_paths(tmp_path / "out")}
        assert redownload(str(videocc_csv), str(tmp_path / "out"), cfg)["clips"] == 3
        assert {p: Path(p).stat().st_mtime_ns for p in shards} == shards  # a rerun cuts nothing

    assert stats["rows"] == 6 and stats["clips"] == 3 and stats["shards"] == 2
    assert [f["line"] for f in stats["rows_malformed"]] == [5, 6]
    (gone,) = stats["clips_failed"]
    assert gone["video_id"] == "gone" and gone["error"].startswith("fetch http_404")

    clips = read_shards(tmp_path / "out").sort_by(
        [("video_id", "ascending"), ("start_s", "ascending")]
    )
    want = [(0, 1.0, 4.5, 0), (0, 8.0, 11.0, 2), (1, 2.0, 6.0, 1)]
    for row, (video, start, end, line) in zip(clips.to_pylist(), want):
        assert row["video_id"] == f"vid{video:03d}"
        assert row["caption"] == ROWS[line].split(",", 3)[3].strip('"')
        assert row["video_url"] == template.format(id=row["video_id"])
        assert row["image_key"] == "" and math.isnan(row["similarity"])
        assert row["cut_mode"] == "reencode" and row["from_section"] is True
        frame = 1.0 / probe(str(small_corpus / "videos" / f"{row['video_id']}.mp4")).fps
        assert row["start_s"] == pytest.approx(start, abs=frame)
        assert row["end_s"] == pytest.approx(end, abs=frame)
        clip = probe(io.BytesIO(row["clip"]))
        assert clip.duration_s == pytest.approx(end - start, abs=2 * frame)
        assert len(row["frames"]) == 8


def test_a_csv_with_no_usable_row_is_refused(tmp_path: Path):
    path = tmp_path / "videocc.csv"
    path.write_text("id,start,end,caption\n")  # a header is not a row of the format
    with pytest.raises(InputError, match="no usable row: line 1: start 'start'"):
        read_videocc_csv(str(path), "https://host/{id}")
    path.write_bytes(b"\xff\xfe\x00v\x00i\x00d")  # UTF-16, not the published format
    with pytest.raises(InputError, match="not a readable UTF-8 CSV"):
        read_videocc_csv(str(path), "https://host/{id}")
    with pytest.raises(InputError, match="does not exist"):
        read_videocc_csv(str(tmp_path / "missing.csv"), "https://host/{id}")
