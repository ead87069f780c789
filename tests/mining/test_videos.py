"""mining.videos: listing the local video corpus from a folder, a glob or a table of paths."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mining.images import InputError
from mining.videos import list_videos, safe_id


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00")
    return path


@pytest.fixture
def video_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "videos"
    for name in ["b.mp4", "a.MKV", "sub/c.webm", "notes.txt", "thumb.jpg"]:
        _touch(folder / name)
    return folder


def test_folder_ids_are_stems(video_folder: Path):
    videos = list_videos(str(video_folder))

    assert [v["video_id"] for v in videos] == ["a", "b", "c"]
    assert [Path(v["path"]).name for v in videos] == ["a.MKV", "b.mp4", "c.webm"]
    for video in videos:
        assert Path(video["path"]).is_absolute() and Path(video["path"]).is_file()
        assert video["video_url"] == Path(video["path"]).as_uri()
        assert video["video_url"].startswith("file:///")


def test_glob(video_folder: Path):
    videos = list_videos(str(video_folder / "*.mp4"))
    assert [(v["video_id"], Path(v["path"]).name) for v in videos] == [("b", "b.mp4")]

    videos = list_videos(str(video_folder / "**" / "*.webm"))
    assert [v["video_id"] for v in videos] == ["c"]


def test_single_file(video_folder: Path):
    videos = list_videos(str(video_folder / "b.mp4"))
    assert [v["video_id"] for v in videos] == ["b"]


def test_txt_table_resolves_relative_paths_against_its_folder(
    video_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    table = video_folder / "list.txt"
    absolute = _touch(tmp_path / "elsewhere" / "d.mp4")
    table.write_text(f"# a comment\nb.mp4\n\n  sub/c.webm  \n{absolute}\n")
    monkeypatch.chdir(tmp_path)  # relative paths must not depend on the working directory

    videos = list_videos(str(table))

    assert [v["video_id"] for v in videos] == ["b", "c", "d"]
    assert [v["path"] for v in videos] == [
        str(video_folder / "b.mp4"),
        str(video_folder / "sub" / "c.webm"),
        str(absolute),
    ]


def test_csv_table_with_path_and_video_id(video_folder: Path, tmp_path: Path):
    table = tmp_path / "tables" / "videos.csv"
    table.parent.mkdir()
    table.write_text(f"path,video_id\n../videos/b.mp4,first\n{video_folder / 'a.MKV'},\n")

    videos = list_videos(str(table))

    assert [v["video_id"] for v in videos] == ["first", "a"]
    assert [Path(v["path"]) for v in videos] == [video_folder / "b.mp4", video_folder / "a.MKV"]


def test_parquet_table(video_folder: Path):
    table = video_folder.parent / "videos.parquet"
    pq.write_table(pa.table({"path": ["videos/b.mp4", "videos/sub/c.webm"]}), table)

    videos = list_videos(str(table))

    assert [v["video_id"] for v in videos] == ["b", "c"]
    assert [Path(v["path"]) for v in videos] == [
        video_folder / "b.mp4",
        video_folder / "sub/c.webm",
    ]


def test_duplicate_stems_get_distinct_ids(tmp_path: Path):
    for name in ["x/clip.mp4", "y/clip.mp4", "z/clip.mkv"]:
        _touch(tmp_path / name)

    videos = list_videos(str(tmp_path))

    ids = [v["video_id"] for v in videos]
    assert ids[0] == "clip"
    assert all(i.startswith("clip-") for i in ids[1:])
    assert len(set(ids)) == 3
    assert len({v["path"] for v in videos}) == 3


def test_suffixed_id_never_collides(tmp_path: Path):
    for name in ["x-2.mp4", "x.mkv", "x.mp4"]:
        _touch(tmp_path / name)

    ids = [v["video_id"] for v in list_videos(str(tmp_path))]

    assert len(ids) == 3
    assert len(set(ids)) == 3, ids


def test_safe_id_sanitises():
    assert safe_id("plain-id_1.v2") == "plain-id_1.v2"
    assert safe_id("my video (1)") == "my_video_1"
    assert safe_id("../../etc/passwd") == "etc_passwd"
    assert safe_id("vidéo ünïcode") == "vid_o_n_code"
    assert safe_id("") == "video"
    assert safe_id("???") == "video"
    assert len(safe_id("a" * 500)) == 128
    for text in ["a/b", "a\\b", "a:b", "a b", "..", "a\nb"]:
        cleaned = safe_id(text)
        assert "/" not in cleaned and "\\" not in cleaned and cleaned not in ("", ".", "..")


def test_unsafe_stems_become_safe_ids(tmp_path: Path):
    _touch(tmp_path / "my video (1).mp4")
    assert [v["video_id"] for v in list_videos(str(tmp_path))] == ["my_video_1"]


def test_missing_path_raises(tmp_path: Path):
    with pytest.raises(InputError, match="do not exist"):
        list_videos(str(tmp_path / "nowhere"))


def test_empty_folder_raises(tmp_path: Path):
    _touch(tmp_path / "readme.md")
    with pytest.raises(InputError, match="holds no video files"):
        list_videos(str(tmp_path))


def test_glob_without_match_raises(tmp_path: Path):
    with pytest.raises(InputError, match="matches no files"):
        list_videos(str(tmp_path / "*.mp4"))


def test_table_without_path_column_raises(tmp_path: Path):
    table = tmp_path / "videos.csv"
    table.write_text("file,duration\na.mp4,3\n")
    with pytest.raises(InputError, match="needs a `path` or `url` column") as err:
        list_videos(str(table))
    assert "file" in str(err.value)


def test_table_mixes_paths_and_urls(tmp_path: Path):
    table = tmp_path / "videos.csv"
    table.write_text(
        "url,video_id\nlocal.mp4,\nhttps://www.youtube.com/watch?v=abc-_1,\n"
        "http://127.0.0.1:8000/media/clip%201.mp4,\nhttps://host/x.mp4,my id/1\n"
    )
    videos = list_videos(str(table))
    assert [v["video_id"] for v in videos] == ["local", "abc-_1", "clip_201", "my_id_1"]
    assert videos[0]["path"] == str(tmp_path / "local.mp4")
    assert [v["path"] for v in videos[1:]] == [None, None, None]  # filled in by the fetch
    assert videos[1]["video_url"] == "https://www.youtube.com/watch?v=abc-_1"
    assert videos[3]["video_url"] == "https://host/x.mp4"


def test_txt_lists_urls(tmp_path: Path):
    table = tmp_path / "videos.txt"
    table.write_text("http://127.0.0.1:8000/a.mp4\nhttp://127.0.0.1:8000/b/a.mp4\n")
    videos = list_videos(str(table))
    assert [v["video_id"] for v in videos] == ["a", "a-1"]
    assert all(v["path"] is None for v in videos)


def test_ids_alone_name_urls_by_template(tmp_path: Path):
    table = tmp_path / "videos.csv"
    table.write_text("video_id\nabc\nxyz\n")
    videos = list_videos(str(table), url_template="http://127.0.0.1:9/v/{id}.mp4")
    assert [v["video_url"] for v in videos] == [
        "http://127.0.0.1:9/v/abc.mp4",
        "http://127.0.0.1:9/v/xyz.mp4",
    ]
    assert list_videos(str(table))[0]["video_url"] == "https://www.youtube.com/watch?v=abc"


def test_empty_table_raises(tmp_path: Path):
    table = tmp_path / "videos.txt"
    table.write_text("# nothing yet\n\n")
    with pytest.raises(InputError, match="lists no videos"):
        list_videos(str(table))
