"""Fetching an image table with the real img2dataset from a loopback server that injects faults."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from PIL import Image

from mining.fetch_images import FetchImagesResult, classify_error, fetch_images, read_url_list
from mining.images import InputError, read_image_table, validate_rows
from pipeline.httpserver import FileServer

REPO = Path(__file__).resolve().parents[2]

# name -> (fault setup, expected error class; None for an image at the end)
FAULTS: dict[str, tuple[tuple[str, ...], str | None]] = {
    "ok-a": ((), None),
    "ok-b": ((), None),
    "gone": (("always", "404"), "http_404"),
    "forbidden": (("always", "403"), "http_403"),
    "throttled": (("always", "429:1"), "http_429"),
    "broken": (("always", "503"), "http_5xx"),
    "throttled-once": (("fail", "429:1"), None),  # recovers on img2dataset's retry
    "broken-once": (("fail", "500"), None),
    "stalled": (("always", "stall:30"), "timeout"),
    "truncated": (("always", "truncate:0.5"), "truncated"),
    "not-an-image": ((), "not_image"),
}
RETRIES = 1


@pytest.fixture(scope="module")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("served")
    for i, name in enumerate(FAULTS):
        if name == "not-an-image":
            (root / f"{name}.jpg").write_text("<html><body>moved</body></html>\n" * 20)
        else:
            Image.new("RGB", (48 + i, 32), (20 * i, 255 - 20 * i, 90)).save(
                root / f"{name}.jpg", quality=90
            )
    return root


@pytest.fixture(scope="module")
def server(image_root: Path):
    with FileServer(image_root) as served:
        yield served


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/nobody-listens.jpg"


def write_csv(path: Path, rows: list[dict]) -> Path:
    pacsv.write_csv(pa.Table.from_pylist(rows), path)
    return path


@pytest.fixture(scope="module")
def faulty_fetch(server: FileServer, tmp_path_factory: pytest.TempPathFactory):
    """One fetch of every fault, with user keys; returns (result, url list rows, out_dir)."""
    for name, (fault, _) in FAULTS.items():
        if fault:
            how, *args = fault
            getattr(server, how)(f"{name}.jpg", *args)
    rows = [
        {"id": f"img-{name}", "url": server.url(f"{name}.jpg"), "caption": f"a photo, {name}"}
        for name in FAULTS
    ]
    rows.append({"id": "img-refused", "url": closed_port_url(), "caption": "nobody listens"})
    work = tmp_path_factory.mktemp("fetch")
    url_list = write_csv(work / "urls.csv", rows)
    result = fetch_images(
        str(url_list),
        str(work / "out"),
        allow_private=True,
        key_col="id",
        threads=4,
        timeout_s=2,  # the stalled URL costs (retries + 1) * timeout_s
        retries=RETRIES,
        shard_size=8,
    )
    return result, rows, work


def read_rows(table_path: str) -> dict[str, dict]:
    table = read_image_table(table_path)
    return {row["key"]: row for row in table.to_pylist()}


def test_every_url_ends_done_or_failed_with_its_class(faulty_fetch, image_root: Path):
    result, rows, _ = faulty_fetch
    by_key = read_rows(result.table_path)
    assert sorted(by_key) == sorted(row["id"] for row in rows)

    expected = {f"img-{name}": error_class for name, (_, error_class) in FAULTS.items()}
    expected["img-refused"] = "connection"
    for key, error_class in expected.items():
        row = by_key[key]
        assert row["error_class"] == error_class, row
        if error_class is None:
            assert row["status"] == "success" and row["error_message"] is None
            name = key.removeprefix("img-")
            assert row["jpg"] == (image_root / f"{name}.jpg").read_bytes()  # kept as served
        else:
            assert row["status"] in ("failed_to_download", "failed_to_resize")
            assert row["jpg"] is None and row["error_message"]

    failed = {c: list(expected.values()).count(c) for c in set(expected.values()) - {None}}
    assert result == FetchImagesResult(
        table_path=result.table_path,
        total=len(rows),
        done=4,
        failed=dict(sorted(failed.items())),
        shards=2,
        fetched_shards=2,
        seconds=result.seconds,
    )


def test_img2dataset_messages(faulty_fetch):
    by_key = read_rows(faulty_fetch[0].table_path)
    messages = {key: row["error_message"] for key, row in by_key.items()}
    assert messages["img-gone"] == "HTTP Error 404: Not Found"
    assert messages["img-forbidden"] == "HTTP Error 403: Forbidden"
    assert messages["img-throttled"] == "HTTP Error 429: Too Many Requests"
    assert messages["img-broken"] == "HTTP Error 503: Service Unavailable"
    assert messages["img-stalled"] == "timed out"
    assert messages["img-truncated"].startswith("IncompleteRead(")
    assert messages["img-not-an-image"] == "Image decoding error"
    assert by_key["img-not-an-image"]["status"] == "failed_to_resize"
    assert "Connection refused" in messages["img-refused"]


def test_transient_errors_succeed_on_retry_and_every_error_is_retried(
    faulty_fetch, server: FileServer
):
    by_key = read_rows(faulty_fetch[0].table_path)
    for name in ("throttled-once", "broken-once"):
        assert by_key[f"img-{name}"]["status"] == "success"
        assert server.requests[f"/{name}.jpg"] == 2 and server.served[f"/{name}.jpg"] == 1
    # img2dataset retries at once and whatever the error: a 404 is asked for again too
    for name in ("gone", "forbidden", "throttled", "broken", "stalled", "truncated"):
        assert server.requests[f"/{name}.jpg"] == RETRIES + 1
    assert server.requests["/ok-a.jpg"] == 1


def test_table_is_what_mining_reads(faulty_fetch):
    result, rows, _ = faulty_fetch
    table = read_image_table(result.table_path)
    for column in ("key", "caption", "jpg", "url", "status", "error_message", "error_class"):
        assert column in table.column_names
    assert "img2dataset_key" in table.column_names  # img2dataset's own numbering, kept
    captions = {row["id"]: row["caption"] for row in rows}
    assert dict(zip(table["key"].to_pylist(), table["caption"].to_pylist())) == captions

    usable, failures = validate_rows(table)
    assert sorted(usable["key"].to_pylist()) == [
        "img-broken-once",
        "img-ok-a",
        "img-ok-b",
        "img-throttled-once",
    ]
    reasons = {f["key"]: f["error"] for f in failures}
    assert reasons["img-gone"] == "failed_to_download: HTTP Error 404: Not Found"
    assert reasons["img-not-an-image"] == "failed_to_resize: Image decoding error"


def test_no_partial_files_are_left(faulty_fetch):
    result, _, work = faulty_fetch
    out = work / "out"
    assert sorted(p.name for p in Path(result.table_path).iterdir()) == [
        "00000.parquet",
        "00001.parquet",
    ]
    assert list((out / "img2dataset").glob("*.parquet")) == []  # each moved into the table
    assert sorted(p.name for p in (out / "img2dataset").glob("*_stats.json")) == [
        "00000_stats.json",
        "00001_stats.json",
    ]
    record = json.loads((out / "fetch.json").read_text())
    assert record["counts"]["done"] == 4 and record["counts"]["shards"] == 2


def test_rerun_fetches_nothing_again(faulty_fetch, server: FileServer):
    result, _, work = faulty_fetch
    before = read_image_table(result.table_path)
    requests = dict(server.requests)
    again = fetch_images(
        str(work / "urls.csv"),
        str(work / "out"),
        allow_private=True,
        key_col="id",
        threads=4,
        timeout_s=2,
        retries=RETRIES,
        shard_size=8,
    )
    assert dict(server.requests) == requests
    assert again.fetched_shards == 0
    assert (again.total, again.done, again.failed) == (result.total, result.done, result.failed)
    assert read_image_table(again.table_path).equals(before)


def test_rerun_with_another_list_or_shard_size_is_refused(faulty_fetch, server: FileServer):
    _, rows, work = faulty_fetch
    other = write_csv(work / "other.csv", rows[:3])
    with pytest.raises(InputError, match="another URL list or with other settings"):
        fetch_images(str(other), str(work / "out"), allow_private=True, key_col="id")
    with pytest.raises(InputError, match=r"changed: shard_size"):
        fetch_images(str(work / "urls.csv"), str(work / "out"), allow_private=True, key_col="id")


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("file:///etc/hostname", "scheme 'file'"),
        ("ftp://93.184.216.34/a.jpg", "scheme 'ftp'"),
        ("http://10.0.0.1/a.jpg", "host 10.0.0.1 is a private address"),
    ],
)
def test_refused_urls_stop_the_fetch_before_any_request(tmp_path: Path, url: str, why: str):
    url_list = write_csv(
        tmp_path / "urls.csv",
        [{"url": "http://93.184.216.34/a.jpg", "caption": "fine"}, {"url": url, "caption": "no"}],
    )
    with pytest.raises(InputError, match="refused 1 of 2 URLs") as err:
        fetch_images(str(url_list), str(tmp_path / "out"), allow_private=False)
    assert repr(url) in str(err.value) and why in str(err.value)
    assert not (tmp_path / "out").exists()


def test_loopback_is_refused_unless_allowed(tmp_path: Path, server: FileServer):
    url = server.url("ok-a.jpg")
    url_list = write_csv(tmp_path / "urls.csv", [{"url": url, "caption": "local"}])
    requests = server.requests[url.removeprefix(server.base_url)]
    with pytest.raises(InputError, match=r"loopback address.*--set fetch\.allow_private=true"):
        fetch_images(str(url_list), str(tmp_path / "out"), allow_private=False)
    assert server.requests[url.removeprefix(server.base_url)] == requests


def test_url_list_formats(tmp_path: Path):
    rows = [{"link": "http://93.184.216.34/a.jpg", "text": "a, with comma", "key": "k1", "n": 1}]
    table = pa.Table.from_pylist(rows)
    pq.write_table(table, tmp_path / "urls.parquet")
    with open(tmp_path / "urls.tsv", "w") as fh:
        fh.write("link\ttext\tkey\tn\nhttp://93.184.216.34/a.jpg\ta, with comma\tk1\t1\n")
    for name in ("urls.parquet", "urls.tsv"):
        urls = read_url_list(
            str(tmp_path / name), url_col="link", caption_col="text", key_col="key"
        )
        assert urls.to_pylist() == [
            {
                "url": "http://93.184.216.34/a.jpg",
                "caption": "a, with comma",
                "url_list_key": "k1",
                "n": 1,
            }
        ]

    (tmp_path / "urls.txt").write_text("http://93.184.216.34/a.jpg\n")
    with pytest.raises(InputError, match="no captions"):
        read_url_list(str(tmp_path / "urls.txt"))
    with pytest.raises(InputError, match=r"no column 'url'.*its columns: link, text, key, n"):
        read_url_list(str(tmp_path / "urls.parquet"))
    pq.write_table(pa.concat_tables([table, table]), tmp_path / "twice.parquet")
    with pytest.raises(InputError, match="unique, non-empty key.*'k1'"):
        read_url_list(
            str(tmp_path / "twice.parquet"), url_col="link", caption_col="text", key_col="key"
        )


def test_classify_error():
    assert classify_error("success", None) is None
    assert classify_error("failed_to_download", "HTTP Error 502: Bad Gateway") == "http_5xx"
    assert classify_error("failed_to_download", "HTTP Error 410: Gone") == "other"
    assert classify_error("failed_to_download", "<urlopen error timed out>") == "timeout"
    assert classify_error("failed_to_download", "The read operation timed out") == "timeout"
    assert (
        classify_error("failed_to_download", "<urlopen error [Errno -2] Name or service not known>")
        == "connection"
    )
    assert classify_error(
        "failed_to_download", "Remote end closed connection without response"
    ) == ("connection")
    assert classify_error("failed_to_resize", "image too small") == "other"
    assert classify_error("failed_to_download", "hash mismatch") == "other"


def test_killed_fetch_resumes_to_the_table_of_an_uninterrupted_run(
    tmp_path: Path, image_root: Path, server: FileServer
):
    names = [n for n in FAULTS if FAULTS[n][1] is None]  # the URLs that end with an image
    paths = [f"resume/{name}.jpg" for name in names]
    (image_root / "resume").mkdir(exist_ok=True)
    for name in names:
        (image_root / "resume" / f"{name}.jpg").write_bytes(
            (image_root / f"{name}.jpg").read_bytes()
        )
    server.fail(paths[2], "stall:20")  # holds the second shard until the driver is killed
    rows = [{"url": server.url(p), "caption": f"caption {p}"} for p in paths]
    url_list = write_csv(tmp_path / "urls.csv", rows)
    out = tmp_path / "out"
    kwargs = dict(allow_private=True, threads=2, timeout_s=10, retries=0, shard_size=2)

    driver = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from mining.fetch_images import fetch_images; "
            "fetch_images(sys.argv[1], sys.argv[2], **eval(sys.argv[3]))",
            str(url_list),
            str(out),
            repr(kwargs),
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120  # slow on a loaded machine
        while not (
            (out / "table" / "00000.parquet").exists() and server.requests[f"/{paths[2]}"] >= 1
        ):
            assert driver.poll() is None, "the driver ended before it could be killed"
            assert time.monotonic() < deadline, "the first shard was never published"
            time.sleep(0.1)
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    finally:
        if driver.poll() is None:
            driver.kill()

    # img2dataset dies with its driver: the lock on out_dir comes free
    fd = os.open(out / ".lock", os.O_RDWR)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                assert time.monotonic() < deadline, "img2dataset outlived its killed driver"
                time.sleep(0.1)
    finally:
        os.close(fd)
    # what the table folder holds after the kill is finished shards only
    assert [p.name for p in (out / "table").glob("*.parquet")] == ["00000.parquet"]
    assert pq.read_table(out / "table" / "00000.parquet").num_rows == 2

    result = fetch_images(str(url_list), str(out), **kwargs)
    assert (result.total, result.done, result.failed, result.shards) == (4, 4, {}, 2)
    assert result.fetched_shards == 1
    assert server.requests[f"/{paths[0]}"] == 1  # the finished shard was not fetched again
    table = read_image_table(result.table_path)
    assert table["key"].to_pylist() == ["000000", "000001", "000010", "000011"]
    assert table["url"].to_pylist() == [r["url"] for r in rows]
    assert table["jpg"].to_pylist() == [(image_root / p).read_bytes() for p in paths]
    assert set(table["status"].to_pylist()) == {"success"}
