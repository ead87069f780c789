"""The mining DAG end to end on the small demo corpus, with the real ffmpeg, PyAV, FAISS, Ray."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import av
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from vcc_processes import kill_when, vcc_command

from mining.shards import read_shards, shard_paths
from pipeline.config import load_config
from pipeline.demo_corpus import load_truth, score_clips
from pipeline.mine import RunMismatchError, mine

# several shards even on the small corpus, so that resume is tested between shards
SMALL_RUN = ["shards.max_rows=3", "ray.num_cpus=2"]

EXPECTED_SCHEMA = [
    ("clip_id", "string"),
    ("video_id", "string"),
    ("video_url", "string"),
    ("start_s", "double"),
    ("end_s", "double"),
    ("match_t_s", "double"),
    ("caption", "string"),
    ("image_key", "string"),
    ("similarity", "float"),
    ("clip", "binary"),
    ("frames", "list<element: binary>"),
    ("width", "int32"),
    ("height", "int32"),
    ("fps", "float"),
    ("duration_s", "float"),
    ("cut_mode", "string"),
    ("from_section", "bool"),
]


def test_shards_have_exactly_the_design_schema(mined):
    assert len(mined.shards) >= 2
    for path in mined.shards:
        schema = pq.read_schema(path)
        assert [(f.name, str(f.type)) for f in schema] == EXPECTED_SCHEMA
        assert schema.metadata[b"vcc.schema_version"] == b"2"
        assert schema.metadata[b"vcc.run_id"]
        assert Path(path).with_name(Path(path).name.replace(".parquet", ".stats.json")).exists()


def test_clips_match_the_truth(mined, small_corpus):
    clips = read_shards(mined.out, columns=["video_id", "start_s", "end_s", "image_key"])
    score = score_clips(clips, load_truth(small_corpus))
    assert score["clips"] > 0
    assert score["precision"] >= 0.95, score
    assert score["recall"] >= 0.9, score
    assert score["purity"] >= 0.9, score


def test_clips_decode_and_spans_are_real(mined, small_corpus):
    table = read_shards(mined.out)
    assert len(set(table["clip_id"].to_pylist())) == table.num_rows
    durations = {v["video_id"]: v["duration_s"] for v in load_truth(small_corpus)["videos"]}
    for row in table.to_pylist():
        with av.open(io.BytesIO(row["clip"])) as container:
            stream = container.streams.video[0]
            frames = list(container.decode(stream))
            assert frames
            fps = float(stream.average_rate)
            probed = (
                float(frames[-1].pts * frames[-1].time_base)
                - float(frames[0].pts * frames[0].time_base)
                + 1.0 / fps
            )
        assert abs(probed - (row["end_s"] - row["start_s"])) <= 1.0 / fps + 1e-6
        assert 0.0 <= row["start_s"] <= row["match_t_s"] <= row["end_s"]
        assert row["end_s"] <= durations[row["video_id"]] + 1e-6
        assert len(row["frames"]) == 8
        assert Image.open(io.BytesIO(row["frames"][0])).format == "JPEG"
        assert (row["width"], row["height"]) == (frames[0].width, frames[0].height)


def test_manifest_and_stats_account_for_every_video(mined, small_corpus):
    manifest = [json.loads(p.read_text()) for p in (mined.out / "manifest").glob("*.json")]
    assert sorted(e["video_id"] for e in manifest) == ["vid000", "vid001"]
    assert all(e["status"] == "done" for e in manifest)
    run = json.loads((mined.out / "run.json").read_text())
    assert run["index"]["embedder"].startswith("dct-")
    stats = json.loads((mined.out / "stats.json").read_text())
    assert stats["clips"] == read_shards(mined.out, columns=["clip_id"]).num_rows


def test_rerun_is_a_no_op_with_the_same_ids(mined, small_corpus):
    before = {p: os.stat(p).st_mtime_ns for p in mined.shards}
    again = mine(
        str(small_corpus / "images.parquet"),
        str(small_corpus / "videos"),
        str(mined.out),
        load_config(overrides=SMALL_RUN),
    )
    assert {p: os.stat(p).st_mtime_ns for p in again.shards} == before


def test_a_changed_config_is_refused_on_the_same_out(mined, small_corpus):
    with pytest.raises(RunMismatchError, match="another config"):
        mine(
            str(small_corpus / "images.parquet"),
            str(small_corpus / "videos"),
            str(mined.out),
            load_config(overrides=[*SMALL_RUN, "match.clip_seconds=4"]),
        )


def test_clip_ids_are_deterministic_across_runs(mined, small_corpus, tmp_path, ray_session):
    other = mine(
        str(small_corpus / "images.parquet"),
        str(small_corpus / "videos"),
        str(tmp_path / "again"),
        load_config(overrides=SMALL_RUN),
    )
    ids = sorted(read_shards(other.out, columns=["clip_id"])["clip_id"].to_pylist())
    assert ids == sorted(read_shards(mined.out, columns=["clip_id"])["clip_id"].to_pylist())


def _vcc_mine(corpus: Path, out: Path, *extra: str) -> list[str]:
    """`vcc mine` on a corpus folder (images.parquet, videos/) into out."""
    images, videos = str(corpus / "images.parquet"), str(corpus / "videos")
    return vcc_command("mine", "--images", images, "--videos", videos, "--out", str(out), *extra)


def _readable(out: Path) -> None:
    for path in shard_paths(out):
        pq.read_table(path)  # a visible shard is always a whole one


def test_sigkill_then_rerun_gives_the_same_clips(mined, small_corpus, tmp_path):
    out = tmp_path / "killed"
    cmd = _vcc_mine(small_corpus, out, *[a for o in SMALL_RUN for a in ("--set", o)])

    in_pass_1 = kill_when(cmd, lambda: len(list((out / "manifest").glob("*.json"))) >= 1)
    _readable(out)
    in_pass_2 = kill_when(cmd, lambda: len(shard_paths(out)) >= 1)
    _readable(out)
    assert in_pass_1 or in_pass_2, "the run finished before either kill; nothing was tested"

    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    leftovers = [p for p in out.rglob(".*tmp*")]
    assert not leftovers
    got = sorted(read_shards(out, columns=["clip_id"])["clip_id"].to_pylist())
    want = sorted(read_shards(mined.out, columns=["clip_id"])["clip_id"].to_pylist())
    assert got == want


def test_bad_inputs_end_as_recorded_failures(small_corpus, bad_videos, tmp_path, ray_session):
    videos = tmp_path / "videos"
    shutil.copytree(small_corpus / "videos", videos)
    for name, path in bad_videos.items():
        shutil.copy(path, videos / f"bad_{name}.mp4")
    table = pq.read_table(small_corpus / "images.parquet")
    first = table.slice(0, 1).to_pylist()[0]
    extra = pa.Table.from_pylist(
        [
            {"key": "broken", "caption": "a photo that is not one", "jpg": b"\x89PNG not really"},
            {"key": "silent", "caption": "   ", "jpg": first["jpg"]},
            {"key": first["key"], "caption": "a second row with a used key", "jpg": first["jpg"]},
        ],
        schema=table.schema,
    )
    images = tmp_path / "images.parquet"
    pq.write_table(pa.concat_tables([table, extra]), images)

    result = mine(str(images), str(videos), str(tmp_path / "out"), load_config())

    manifest = {p.stem: json.loads(p.read_text()) for p in (result.out / "manifest").glob("*")}
    for name in bad_videos:
        entry = manifest[f"bad_{name}"]
        assert entry["status"] == "failed" and entry["error"], entry
    assert "no video stream" in manifest["bad_audioonly"]["error"]
    assert manifest["vid000"]["status"] == manifest["vid001"]["status"] == "done"

    failures = {
        r["key"]: r["error"]
        for r in pq.read_table(result.out / "images" / "failures.parquet").to_pylist()
    }
    assert "undecodable image" in failures["broken"]
    assert failures["silent"] == "empty caption"
    assert "duplicate key" in failures[first["key"]]
    assert result.stats["clips"] > 0
    assert set(result.stats["videos_failed"]) == {f"bad_{n}" for n in bad_videos}


def test_keyframe_mode_refines_cuts_where_clips_need_them(small_corpus, tmp_path, ray_session):
    # keyframes are up to 2 s apart in the fixed-GOP video, so each cut a clip touches must be
    # found by decoding its interval; purity shows whether that worked
    result = mine(
        str(small_corpus / "images.parquet"),
        str(small_corpus / "videos"),
        str(tmp_path / "out"),
        load_config(overrides=["decode.mode=keyframes"]),
    )
    manifest = json.loads((result.out / "manifest" / "vid001.json").read_text())
    widths = [hi - lo for lo, hi in manifest["boundaries"]]
    assert max(widths) > 0.5, "the coarse boundaries should be keyframe intervals"
    clips = read_shards(result.out, columns=["video_id", "start_s", "end_s", "image_key"])
    score = score_clips(clips, load_truth(small_corpus))
    assert score["clips"] > 0
    assert score["precision"] >= 0.95, score
    assert score["purity"] >= 0.95, score


def test_mines_on_a_ray_cluster_given_by_address(small_corpus, tmp_path):
    """A separate Ray head (what `ray up` starts), joined through --address."""
    port = "6390"
    # a `ray start` head wants a token from its clients; both read it from ~/.ray/auth_token
    env = {**os.environ, "RAY_ADDRESS": "", "RAY_AUTH_MODE": "token"}
    # --block keeps the head's processes in one group, so that only this head is stopped
    head = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("ray")),
            "start",
            "--head",
            f"--port={port}",
            "--num-cpus=2",
            "--include-dashboard=false",
            "--disable-usage-stats",
            "--block",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    try:
        done = subprocess.run(
            _vcc_mine(small_corpus, tmp_path / "out", "--address", f"127.0.0.1:{port}"),
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        head.wait(timeout=60)
        # `ray start` leaves its address for later ray.init() calls; the head is gone now
        Path("/tmp/ray/ray_current_cluster").unlink(missing_ok=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert read_shards(tmp_path / "out", columns=["clip_id"]).num_rows > 0
