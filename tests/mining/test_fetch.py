"""yt-dlp fetches, for real, from a loopback server that fails on cue."""

from __future__ import annotations

import io
import shutil
import time
from email.utils import formatdate
from pathlib import Path

import av
import numpy as np
import pytest

from mining.cut import keyframe_at_or_before
from mining.fetch import (
    FetchError,
    FetchOptions,
    classify,
    fetch_section,
    fetch_video,
    ydl_params,
)
from mining.media import probe
from pipeline.config import load_config
from pipeline.httpserver import FileServer
from pipeline.stages import cut_video

FAST = FetchOptions(timeout_s=1.0)


@pytest.fixture(scope="module")
def served(test_video: Path, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("served")
    shutil.copy(test_video, root / "video.mp4")
    (root / "page.mp4").write_bytes(b"<html>not a video</html>\n" * 40)
    with FileServer(root) as server:
        yield server


@pytest.fixture(autouse=True)
def healed(served: FileServer):
    served.heal()
    yield


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_fetches_the_whole_file(served: FileServer, test_video: Path, tmp_path: Path):
    got = fetch_video(served.url("video.mp4"), "v1", tmp_path, FAST)
    assert got.path == str(tmp_path / "v1.mp4")
    assert Path(got.path).read_bytes() == test_video.read_bytes()
    assert got.bytes == test_video.stat().st_size
    assert got.duration_s == pytest.approx(probe(str(test_video)).duration_s)
    assert _leftovers(tmp_path) == ["v1.mp4"]  # no temp folder or .part file stays


# faults queued on video.mp4; yt-dlp's first request sniffs the URL, its second downloads
# case: (path, faults, class, whether trying again can help)
FAULTS = {
    "404": ("missing.mp4", [], "http_404", False),
    "403": ("video.mp4", ["403"], "http_403", False),
    "429": ("video.mp4", ["429:7"], "http_429", True),
    "500": ("video.mp4", ["500"], "http_5xx", True),
    "500 mid-download": ("video.mp4", ["ok", "503"], "http_5xx", True),
    "stall": ("video.mp4", ["ok", "stall:30"], "timeout", True),
    "truncated body": ("video.mp4", ["ok", "truncate:0.4"], "truncated", True),
    "not a video": ("page.mp4", [], "not_video", False),
}


@pytest.mark.parametrize("case", FAULTS)
def test_each_fault_ends_in_its_class(served: FileServer, tmp_path: Path, case: str):
    name, faults, klass, transient = FAULTS[case]
    served.fail(name, *faults)
    started = time.monotonic()
    with pytest.raises(FetchError) as err:
        fetch_video(served.url(name), "v1", tmp_path, FAST)
    assert err.value.klass == klass, err.value.message
    assert err.value.transient is transient
    assert time.monotonic() - started < 10  # a stall fails after timeout_s, not the server's 30
    assert _leftovers(tmp_path) == []  # nothing partial where the video would be


def test_retry_after_is_read_from_the_429(served: FileServer, tmp_path: Path):
    served.fail("video.mp4", "429:7")
    with pytest.raises(FetchError) as err:
        fetch_video(served.url("video.mp4"), "v1", tmp_path, FAST)
    assert err.value.retry_after == 7.0


def test_a_recovered_host_serves_the_next_try(served: FileServer, tmp_path: Path):
    served.fail("video.mp4", "ok", "truncate:0.5")
    with pytest.raises(FetchError):
        fetch_video(served.url("video.mp4"), "v1", tmp_path, FAST)
    assert fetch_video(served.url("video.mp4"), "v1", tmp_path, FAST).bytes > 0


def test_limits_are_permanent_failures(served: FileServer, tmp_path: Path):
    with pytest.raises(FetchError) as err:
        fetch_video(served.url("video.mp4"), "v1", tmp_path, FetchOptions(max_duration_s=2.0))
    assert err.value.klass == "too_long" and "max_duration_s" in err.value.message
    with pytest.raises(FetchError) as err:
        fetch_video(served.url("video.mp4"), "v2", tmp_path, FetchOptions(max_filesize_mb=0.01))
    assert err.value.klass == "too_large"
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("message", "klass"),
    [
        ("ERROR: [youtube] x: Private video. Sign in if you've been granted access", "private"),
        ("ERROR: [youtube] x: Video unavailable. This video has been removed", "unavailable"),
        ("ERROR: [youtube] x: Sign in to confirm you're not a bot", "bot_check"),
        ("ERROR: Unsupported URL: https://example.com/", "unsupported"),
        ("ERROR: unable to download video data: HTTP Error 502: Bad Gateway", "http_5xx"),
        ("ERROR: [Errno 104] Connection reset by peer", "connection"),
        ("something nobody has seen before", "other"),
    ],
)
def test_classify_messages(message: str, klass: str):
    assert classify(RuntimeError(message)).klass == klass


def test_retry_after_as_an_http_date():
    from mining.fetch import _retry_after

    assert _retry_after("12") == 12.0
    assert _retry_after(formatdate(time.time() + 30, usegmt=True)) == pytest.approx(30, abs=2)
    assert _retry_after("soon") is None


def _gray_frames(source) -> list[tuple[float, np.ndarray]]:
    with av.open(source) as container:
        return [
            (float(f.time), f.to_ndarray(format="gray").astype(np.float64))
            for f in container.decode(video=0)
        ]


def _nearest(frame: np.ndarray, source: list[tuple[float, np.ndarray]]) -> tuple[float, float]:
    """(time of the source frame most like frame, its mean squared error)."""
    errors = [float(np.mean((frame - f) ** 2)) for _, f in source]
    best = int(np.argmin(errors))
    return source[best][0], errors[best]


def test_section_starts_at_the_requested_frame(served: FileServer, test_video: Path, tmp_path):
    path = fetch_section(served.url("video.mp4"), 1.3, 2.5, str(tmp_path), FAST)
    section = _gray_frames(path)
    source = _gray_frames(str(test_video))
    assert _nearest(section[0][1], source)[0] == pytest.approx(1.32)  # first frame at >= 1.3
    assert section[0][0] == pytest.approx(0.0)
    assert len(section) == pytest.approx(30, abs=1)  # 1.2 s at 25 fps


def _exact(start: float, end: float) -> dict:
    """A span to cut as given, as a VideoCC row is: no caption image, no score."""
    return {
        "exact": True,
        "start_s": start,
        "end_s": end,
        "match_t_s": (start + end) / 2,
        "caption": "a test pattern",
        "image_key": "",
        "similarity": float("nan"),
    }


@pytest.mark.parametrize("mode", ["reencode", "copy"])
def test_a_span_cut_from_a_section(served: FileServer, test_video: Path, mode: str):
    """A video with no file is cut from a fetched section; the row says how it was cut."""
    cfg = load_config(overrides=[f"cut.mode={mode}", "cut.max_height=90"])
    video = {"video_id": "v1", "path": None, "video_url": served.url("video.mp4")}
    rows, failures = cut_video(video, [_exact(1.3, 2.5)], cfg)
    assert failures == []
    (row,) = rows
    assert row["cut_mode"] == mode and row["from_section"] is True
    frame = 1 / 25
    clip_frames = _gray_frames(io.BytesIO(row["clip"]))
    first, error = _nearest(clip_frames[0][1], _gray_frames(str(test_video)))
    if mode == "reencode":  # frame-accurate: within a frame of the request
        assert row["start_s"] == pytest.approx(1.3, abs=frame)
        assert first == pytest.approx(1.32)
    else:  # a stream copy starts at the keyframe before the request
        keyframe = keyframe_at_or_before(str(test_video), 1.3)
        assert keyframe == pytest.approx(1.0)
        assert row["start_s"] == pytest.approx(keyframe, abs=frame)
        assert first == pytest.approx(keyframe) and error < 1.0  # the same bits
    assert row["end_s"] == pytest.approx(2.5, abs=2 * frame)
    assert row["duration_s"] == pytest.approx(row["end_s"] - row["start_s"], abs=frame)
    assert row["video_url"] == served.url("video.mp4")


def test_section_fetch_failure_is_recorded_per_span(served: FileServer):
    cfg = load_config()
    video = {"video_id": "gone", "path": None, "video_url": served.url("missing.mp4")}
    rows, failures = cut_video(video, [_exact(1.0, 2.0)], cfg)
    assert rows == []
    assert failures[0]["error"].startswith("fetch http_404")


def test_the_proxy_and_cookies_go_to_yt_dlp(served: FileServer, test_video: Path, tmp_path: Path):
    """A forward proxy on loopback carries the fetch of a URL that is not reachable itself."""
    cookies = tmp_path / "cookies.txt"
    cookies.write_text("# Netscape HTTP Cookie File\n")
    opts = FetchOptions(timeout_s=2.0, proxy=served.base_url, cookies=str(cookies))
    params = ydl_params(opts, "x")
    assert params["proxy"] == served.base_url and params["cookiefile"] == str(cookies)
    before = served.requests["/video.mp4"]
    got = fetch_video("http://127.0.0.1:9/video.mp4", "v1", tmp_path / "out", opts)
    assert Path(got.path).read_bytes() == test_video.read_bytes()
    assert served.requests["/video.mp4"] == before + 2  # both of yt-dlp's requests went through
