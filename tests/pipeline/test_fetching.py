"""Pass 0 (fetch) on Ray: yt-dlp against a loopback server that fails on cue; resume; sections."""

from __future__ import annotations

import io
import shutil
import subprocess
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
import ray
from vcc_processes import kill_when, vcc_command

from mining.media import probe
from mining.shards import read_shards
from mining.videos import list_videos
from pipeline.cli import main
from pipeline.config import load_config
from pipeline.fetching import (
    FetchProgress,
    HostGate,
    ImageFetchProgress,
    fetch_videos,
)
from pipeline.httpserver import FileServer
from pipeline.mine import mine
from pipeline.store import OutputRoot

FETCH = [
    "fetch.allow_private=true",
    "fetch.retries=2",
    "fetch.backoff_s=0.2",
    "fetch.max_backoff_s=1.5",
    "fetch.timeout_s=1",
    "fetch.quarantine_after=2",
]

# url path -> (faults queued, `always` fault, the record it must end with)
CASES = {
    "ok/vid000.mp4": ([], None, ("done", None)),
    "ok/nope.mp4": ([], None, ("failed", "http_404")),
    "forbidden/vid001.mp4": ([], "403", ("failed", "http_403")),
    "limited/vid001.mp4": (["429:1"], None, ("done", None)),
    "flaky/vid000.mp4": (["ok", "500"], None, ("done", None)),
    "stalls/vid000.mp4": (["ok", "stall:30"], None, ("done", None)),
    "cut-short/vid001.mp4": (["ok", "truncate:0.5"], None, ("done", None)),
    "page.mp4": ([], None, ("failed", "not_video")),
    "down/vid000.mp4": ([], "500", ("failed", "http_5xx")),
}


@pytest.fixture(scope="module")
def site(small_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small corpus's videos under several folders, and a page that is no video."""
    root = tmp_path_factory.mktemp("site")
    for folder in ("ok", "forbidden", "limited", "flaky", "stalls", "cut-short", "down", "videos"):
        shutil.copytree(small_corpus / "videos", root / folder)
    (root / "page.mp4").write_text("<html><body>this page moved</body></html>\n" * 20)
    (root / "images").mkdir()
    table = pq.read_table(small_corpus / "images.parquet")
    for key, jpg in zip(table["key"].to_pylist(), table["jpg"].to_pylist()):
        (root / "images" / f"{key}.jpg").write_bytes(jpg)
    return root


@pytest.fixture
def server(site: Path):
    with FileServer(site) as server:
        yield server


def _videos(server: FileServer, paths) -> list[dict]:
    return [
        {
            "video_id": p.replace("/", "_").removesuffix(".mp4"),
            "path": None,
            "video_url": server.url(p),
        }
        for p in paths
    ]


def _arm(server: FileServer) -> None:
    server.heal()
    for path, (queued, always, _) in CASES.items():
        server.fail(path, *queued)
        if always:
            server.always(path, always)


def _outcomes(out: OutputRoot) -> dict[str, tuple]:
    return {k: (r["status"], r.get("class")) for k, r in out.read_fetch().items()}


def test_every_url_ends_done_or_failed_with_its_class(server, site, tmp_path, ray_session):
    _arm(server)
    out = OutputRoot(tmp_path / "out")
    videos = _videos(server, CASES)
    counts = fetch_videos(load_config(overrides=FETCH).fetch, out, videos)

    want = {v["video_id"]: CASES[p][2] for v, p in zip(videos, CASES)}
    assert _outcomes(out) == want
    assert counts == {"done": 5, "http_404": 1, "http_403": 1, "not_video": 1, "http_5xx": 1}
    records = out.read_fetch()
    for video, path in zip(videos, CASES):
        record = records[video["video_id"]]
        if record["status"] == "done":  # recovered ones too: the whole file, where expected
            assert video["path"] == record["path"] == str(out.videos / f"{video['video_id']}.mp4")
            assert Path(record["path"]).read_bytes() == (site / path).read_bytes()
            probe(record["path"])
        else:
            assert video["path"] is None and record["error"]
            assert record["transient"] == (record["class"] == "http_5xx")
    assert sorted(p.name for p in out.videos.iterdir()) == sorted(
        f"{k}.mp4" for k, (status, _) in want.items() if status == "done"
    )  # no partial file, no temp folder
    # transient ones were retried by Ray: the 429 answered once, then a sniff and the download
    assert server.requests["/limited/vid001.mp4"] == 3
    assert server.requests["/down/vid000.mp4"] == 3  # 1 try + 2 retries, then it gave up
    assert server.requests["/ok/nope.mp4"] == 1  # a 404 is never retried


def test_reruns_retry_only_transient_failures_then_quarantine(server, tmp_path, ray_session):
    _arm(server)
    out = OutputRoot(tmp_path / "out")
    cfg = load_config(overrides=FETCH).fetch
    fetch_videos(cfg, out, _videos(server, CASES))
    before = dict(server.requests)

    fetch_videos(cfg, out, _videos(server, CASES))  # run 2: only the transient failure again
    again = {p: n - before.get(p, 0) for p, n in server.requests.items() if n != before.get(p, 0)}
    assert again == {"/down/vid000.mp4": 3}
    assert out.read_fetch()["down_vid000"]["runs"] == 2

    before = dict(server.requests)
    fetch_videos(cfg, out, _videos(server, CASES))  # run 3: quarantined, no request at all
    assert dict(server.requests) == before
    record = out.read_fetch()["down_vid000"]
    assert record["status"] == "quarantined" and record["class"] == "http_5xx"
    assert (out.fetch / "quarantine.txt").read_text() == server.url("down/vid000.mp4") + "\n"


def _url_list(server: FileServer, folder: Path, names: list[str]) -> Path:
    table = folder / "videos.csv"
    table.write_text("url\n" + "".join(server.url(n) + "\n" for n in names))
    return table


def test_mining_url_lists_with_deleted_cache(server, small_corpus, mined, tmp_path, capsys):
    """Images through img2dataset, videos through yt-dlp, deleted after pass 1 and cut from
    fetched sections: the clips of a run on the local files."""
    names = [f"videos/{p.name}" for p in sorted((small_corpus / "videos").iterdir())]
    table = pq.read_table(small_corpus / "images.parquet", columns=["key", "caption"])
    images = tmp_path / "images.csv"
    pcsv.write_csv(
        table.append_column(
            "url", pa.array([server.url(f"images/{k}.jpg") for k in table["key"].to_pylist()])
        ),
        images,
    )
    result = mine(
        str(images),
        str(_url_list(server, tmp_path, names)),
        str(tmp_path / "out"),
        load_config(overrides=[*FETCH, "fetch.cache=delete", "ray.num_cpus=2"]),
    )
    columns = ["clip_id", "start_s", "end_s", "from_section", "cut_mode", "video_url"]
    got = read_shards(result.out, columns=columns).sort_by("clip_id").to_pylist()
    want = read_shards(mined.out, columns=columns).sort_by("clip_id").to_pylist()
    assert [r["clip_id"] for r in got] == [r["clip_id"] for r in want] and got
    for section, whole in zip(got, want):
        assert section["from_section"] is True and whole["from_section"] is False
        assert section["cut_mode"] == whole["cut_mode"] == "reencode"
        assert section["start_s"] == pytest.approx(whole["start_s"], abs=0.04)
        assert section["end_s"] == pytest.approx(whole["end_s"], abs=0.04)
        assert section["video_url"].startswith(server.base_url)
    assert list((tmp_path / "out" / "videos").iterdir()) == []  # deleted after pass 1
    fetched = pq.read_table(tmp_path / "out" / "images" / "fetched" / "table")
    assert sorted(fetched["key"].to_pylist()) == sorted(table["key"].to_pylist())
    assert set(fetched["status"].to_pylist()) == {"success"}
    lines = capsys.readouterr().err.splitlines()  # both fetches said how far they were
    n = table.num_rows
    assert any(
        ln.startswith(f"fetch images: 1/1 shards | 0 failed | {n}/{n} images") for ln in lines
    )
    assert any(ln.startswith("fetch: 2/2 videos | 0 failed | ") for ln in lines)
    assert result.stats["fetch"] == {
        "urls": 2,
        "done": 2,
        "failed_by_class": {},
        "quarantined": [],
        "failures": {},
    }


def _stable(out: Path) -> dict:
    """The fetch records without what changes between runs (timings, OUT's own path)."""
    return {
        k: {f: v for f, v in r.items() if f not in ("seconds", "path")}
        for k, r in OutputRoot(out).read_fetch().items()
    }


def test_sigkill_mid_fetch_then_rerun(small_corpus, site, tmp_path, ray_session):
    """Killed while fetching, a rerun fetches each URL at most once more and ends the same."""
    folders = ("ok", "flaky", "limited", "videos")
    names = [f"{f}/{p.name}" for f in folders for p in sorted((small_corpus / "videos").iterdir())]
    overrides = [*FETCH, "fetch.per_host=1", "ray.num_cpus=2"]
    with FileServer(site, latency_s=0.2) as server:  # a slow host: fetching takes a while
        table = _url_list(server, tmp_path, names)
        fetch_videos(
            load_config(overrides=overrides).fetch,
            OutputRoot(tmp_path / "whole"),
            list_videos(str(table)),
        )
        uninterrupted = dict(server.requests)
        server.requests.clear()

        out = tmp_path / "killed"
        sets = [a for o in overrides for a in ("--set", o)]
        cmd = vcc_command("fetch", "--videos", str(table), "--out", str(out), *sets)
        killed = kill_when(cmd, lambda: len(list((out / "fetch").glob("*.json"))) >= 1)
        assert killed, "the run finished before the kill; nothing was tested"
        for video in (out / "videos").iterdir():  # a visible video is always a whole one
            if not video.name.startswith("."):
                probe(str(video))
        assert len(_stable(out)) < len(names)
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        assert f"fetched {len(names)} of {len(names)} URLs" in done.stdout

    for path, n in server.requests.items():
        assert n <= 2 * uninterrupted[path], path  # at most one fetch more than needed
    assert not list(out.rglob(".*tmp*"))
    assert _stable(out) == _stable(tmp_path / "whole")


def test_urls_that_must_not_be_fetched_are_refused(small_corpus, tmp_path, capsys):
    images = str(small_corpus / "images.parquet")
    for listed, why in [
        ("file:///etc/passwd", "file"),
        ("ftp://127.0.0.1/a.mp4", "ftp"),
        ("http://127.0.0.1:9/a.mp4", "fetch.allow_private"),
    ]:
        table = tmp_path / "videos.csv"
        table.write_text(f"url\n{listed}\n")
        out = tmp_path / "out"
        code = main(["mine", "--images", images, "--videos", str(table), "--out", str(out)])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("vcc: error:") and why in err, err
        assert not out.exists()  # refused before anything was written


def test_the_progress_line_says_done_failed_by_class_bytes_rate_and_eta():
    stream = io.StringIO()
    progress = FetchProgress(4, every=0.0, stream=stream)
    progress.update({"status": "done", "bytes": 3 * 2**20})
    progress.update({"status": "failed", "class": "http_404"})
    progress.update({"status": "failed", "class": "http_429"})
    line = stream.getvalue().splitlines()[-1]
    assert line.startswith("fetch: 3/4 videos | 2 failed | 3.0 MiB at ")
    assert "MiB/s | http_404 1, http_429 1 | ETA 0:" in line
    progress.update({"status": "done", "bytes": 2**20})
    progress.close()
    assert stream.getvalue().splitlines()[-1].startswith("fetch: 4/4 videos | 2 failed | 4.0 MiB")


def test_the_host_gate_holds_concurrency_rate_and_pauses(ray_session):
    gate = HostGate.remote(2, 0.0, 0.2, 5.0)
    first, second = ray.get([gate.acquire.remote("a"), gate.acquire.remote("a")])
    third = gate.acquire.remote("a")
    other = gate.acquire.remote("b")  # hosts do not share their limits
    assert ray.wait([third], timeout=0.5)[0] == [] and ray.get(other, timeout=5) is not None
    ray.get(gate.release.remote(first))
    ray.get(third, timeout=5)  # a free slot goes to the waiting fetch

    ray.get(gate.release.remote(second, True, 1.0))  # a 429 with Retry-After: 1
    assert ray.get(gate.paused.remote("a")) == pytest.approx(1.0, abs=0.2)
    started = time.monotonic()
    ray.get(gate.acquire.remote("a"), timeout=10)
    assert time.monotonic() - started >= 0.7
    ray.kill(gate)

    paced = HostGate.remote(8, 4.0, 0.2, 5.0)  # at most 4 starts a second
    started = time.monotonic()
    ray.get([paced.acquire.remote("a") for _ in range(5)], timeout=10)
    assert time.monotonic() - started >= 0.9  # 5 starts: 4 gaps of 0.25 s
    ray.kill(paced)


def test_the_image_progress_rate_counts_from_the_fetch_start():
    stream = io.StringIO()
    progress = ImageFetchProgress(every=0.0, stream=stream)
    progress.started -= 10.0  # img2dataset ran 10 s before its first shard was done
    counts = {"shards": 1, "of": 2, "rows": 4, "done": 3, "bytes": 5 * 2**20}
    progress.update({**counts, "failed": {"http_404": 1}})
    progress.close()
    line = stream.getvalue().splitlines()[-1]
    assert line.startswith("fetch images: 1/2 shards | 0 failed | 3/4 images | 5.0 MiB at 0.5")
    assert "| http_404 1 |" in line
