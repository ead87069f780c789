"""The `vcc` command line: inputs that cannot work stop at once, with a message and exit code 2."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from vcc_processes import run_vcc


@pytest.fixture()
def video_dir(tmp_path, test_video):
    folder = tmp_path / "videos"
    folder.mkdir()
    (folder / "a.mp4").write_bytes(test_video.read_bytes())
    return folder


def _mine(images, videos, out, *extra):
    return run_vcc(
        "mine", "--images", str(images), "--videos", str(videos), "--out", str(out), *extra
    )


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing_images", "image table {tmp}/nope.parquet does not exist"),
        ("empty_table", "has no rows"),
        ("no_caption_column", "lacks column(s) caption"),
        ("not_parquet", "is not readable Parquet"),
        ("missing_videos", "do not exist"),
        ("empty_video_folder", "holds no video files"),
        ("bad_config", "unknown key match.treshold"),
        ("bad_value", "cut.mode: 'fast' is not allowed"),
    ],
)
def test_unusable_input_stops_before_any_work(case, message, tmp_path, video_dir, small_corpus):
    images = small_corpus / "images.parquet"
    videos = video_dir
    extra: list[str] = []
    if case == "missing_images":
        images = tmp_path / "nope.parquet"
    elif case == "empty_table":
        images = tmp_path / "empty.parquet"
        pq.write_table(pq.read_table(small_corpus / "images.parquet").slice(0, 0), images)
    elif case == "no_caption_column":
        images = tmp_path / "nocaption.parquet"
        pq.write_table(pq.read_table(small_corpus / "images.parquet").drop(["caption"]), images)
    elif case == "not_parquet":
        images = tmp_path / "text.parquet"
        images.write_text("key,caption\n")
    elif case == "missing_videos":
        videos = tmp_path / "no-such-folder"
    elif case == "empty_video_folder":
        videos = tmp_path / "empty"
        videos.mkdir()
    elif case == "bad_config":
        config = tmp_path / "c.yaml"
        config.write_text("match:\n  treshold: 0.5\n")
        extra = ["--config", str(config)]
    elif case == "bad_value":
        extra = ["--set", "cut.mode=fast"]

    out = tmp_path / "out"
    result = _mine(images, videos, out, *extra)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "vcc: error:" in result.stderr
    assert message.format(tmp=tmp_path) in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists(), "nothing may be written before the inputs are known to be usable"


def test_a_table_with_extra_columns_is_fine(tmp_path, small_corpus):
    table = pq.read_table(small_corpus / "images.parquet")
    table = table.append_column("url", pa.array(["http://example.invalid"] * table.num_rows))
    from mining.images import read_image_table

    path = tmp_path / "extra.parquet"
    pq.write_table(table, path)
    assert read_image_table(str(path)).column_names == ["key", "caption", "jpg", "url"]


def test_help_and_config_listing():
    result = run_vcc("--help")
    assert result.returncode == 0 and "mine" in result.stdout and "demo" in result.stdout
    listing = run_vcc("config")
    assert listing.returncode == 0
    assert "match.threshold = None  # " in listing.stdout
    assert "train.optim.lr = 0.0005  # " in listing.stdout
