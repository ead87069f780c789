"""Fetching the image table from a URL list, with img2dataset as downloader and distributor.

`fetch_images` checks the whole list first (`mining.urls`), hands it to img2dataset in a child
process, and publishes each shard that img2dataset finished into the table folder that mining
reads. The layout of `out_dir`:

    table/NNNNN.parquet  the image table (img2dataset's Parquet layout): key, caption, jpg, url,
                         status, error_message, error_class, width, height, original_width,
                         original_height, sha256, and the URL list's other columns; one row per
                         URL, failures included (jpg null, status and error_message say why)
    img2dataset/         img2dataset's output folder: the shard it is writing, and one
                         NNNNN_stats.json per finished shard, which drives its resume
    url_list.parquet     the checked URL list as img2dataset reads it
    fetch.json           what was fetched (the list's fingerprint, the settings) and the counts
    img2dataset.log      img2dataset's own output

img2dataset writes a shard in place and its stats file after it, so a killed run can leave a
partial shard in img2dataset/. Only shards with a stats file are published, each atomically
(sorted by key, so a rerun gives the same bytes), and a rerun fetches only shards without one:
a killed run and its rerun end with the table of an uninterrupted run. A failed URL in a
finished shard stays failed; its shard is not fetched again.

img2dataset retries each failed request `retries` times at once, whatever the error (a 404 too),
and ignores Retry-After.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import logging
import math
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from mining.atomic import write_json, write_parquet
from mining.images import InputError
from mining.urls import check_urls

log = logging.getLogger(__name__)

ERROR_CLASSES = (
    "http_404",
    "http_403",
    "http_429",
    "http_5xx",
    "timeout",
    "connection",
    "truncated",
    "not_image",
    "other",
)
RESIZE_MODES = ("no", "keep_ratio", "center_crop", "border", "keep_ratio_largest")
ENCODE_FORMATS = ("jpg", "png", "webp")
INPUT_FORMATS = {
    ".csv": "csv",
    ".csv.gz": "csv",
    ".tsv": "tsv",
    ".tsv.gz": "tsv",
    ".parquet": "parquet",
    ".txt": "txt",
    ".txt.gz": "txt",
}

# the user's key column travels through img2dataset under this name; `key` is img2dataset's own
_LIST_KEY = "url_list_key"
# columns img2dataset writes itself (or refuses in save_additional_columns), and ours
_RESERVED = {
    "key",
    "caption",
    "url",
    "width",
    "height",
    "original_width",
    "original_height",
    "status",
    "error_message",
    "exif",
    "md5",
    "sha256",
    "sha512",
    "txt",
    *ENCODE_FORMATS,
    "error_class",
    "img2dataset_key",
    _LIST_KEY,
}
# settings that change what is fetched: a rerun on one out_dir must keep them
_PINNED = ("shard_size", "image_size", "resize_mode", "encode_format", "encode_quality")
_LOCK_WAIT_S = 30.0

# runs img2dataset in its own session; a thread kills that session when the driver dies, so a
# killed driver leaves no shard being written behind the back of its rerun
_CHILD = r"""
import json, os, signal, sys, threading, time

params, driver = json.loads(sys.argv[1]), int(sys.argv[2])

def watch_driver():
    while os.getppid() == driver:
        time.sleep(0.2)
    os.killpg(0, signal.SIGKILL)

threading.Thread(target=watch_driver, daemon=True).start()
try:
    from img2dataset import download

    download(**params)
except BaseException:
    import traceback

    traceback.print_exc()
    sys.stdout.flush()
    os._exit(1)  # not sys.exit: that would wait for img2dataset's logger process forever
"""


@dataclass(frozen=True)
class FetchImagesResult:
    """What a fetch left in its out_dir; the counts cover every shard there, earlier runs too."""

    table_path: str
    """the folder of Parquet shards to give mining as its image table"""
    total: int
    """rows of the URL list, each one row of the table"""
    done: int
    """rows with an image (status success)"""
    failed: dict[str, int] = field(default_factory=dict)
    """failed rows by error class (see `ERROR_CLASSES`)"""
    shards: int = 0
    fetched_shards: int = 0
    """shards this call fetched; the others were finished by an earlier run"""
    seconds: float = 0.0

    @property
    def failed_total(self) -> int:
        return sum(self.failed.values())


_HTTP_STATUS = re.compile(r"HTTP Error (\d{3})")


def classify_error(status: str | None, error_message: str | None) -> str | None:
    """The error class of one img2dataset row, from its `status` and `error_message`; None
    for a success.

    img2dataset writes urllib's messages: `HTTP Error 404: Not Found`, `timed out`,
    `<urlopen error [Errno 111] Connection refused>`, `IncompleteRead(338 bytes read, 339 more
    expected)`, and `Image decoding error` (status failed_to_resize) for a body that is no image.
    """
    if status == "success":
        return None
    message = error_message or ""
    http = _HTTP_STATUS.search(message)
    if http:
        code = int(http[1])
        if code in (403, 404, 429):
            return f"http_{code}"
        return "http_5xx" if 500 <= code < 600 else "other"
    lowered = message.lower()
    if "timed out" in lowered or "timeout" in lowered:
        return "timeout"
    if "incompleteread" in lowered:
        return "truncated"
    if status == "failed_to_resize":
        return "not_image" if "decod" in lowered else "other"
    connection_words = ("urlopen error", "connection", "remote end closed", "errno", "ssl")
    if any(word in lowered for word in connection_words):
        return "connection"
    return "other"


def _input_format(path: str, input_format: str | None) -> str:
    if input_format is not None:
        if input_format not in set(INPUT_FORMATS.values()):
            raise ValueError(
                f"input_format {input_format!r} is not one of "
                f"{', '.join(sorted(set(INPUT_FORMATS.values())))}"
            )
        return input_format
    name = path.lower()
    for suffix in sorted(INPUT_FORMATS, key=len, reverse=True):
        if name.endswith(suffix):
            return INPUT_FORMATS[suffix]
    raise InputError(
        f"URL list {path}: cannot tell its format from the name; use a file ending in "
        f"{', '.join(INPUT_FORMATS)}, or pass input_format"
    )


def read_url_list(
    url_list: str,
    *,
    url_col: str = "url",
    caption_col: str = "caption",
    key_col: str | None = None,
    input_format: str | None = None,
) -> pa.Table:
    """Read a CSV, TSV (both with a header row) or Parquet URL list into the table that
    img2dataset is given: `url`, `caption`, the user key as `url_list_key` when `key_col` is
    set, and the list's other columns as metadata (those named like img2dataset's own columns
    are left out, with a warning).

    A TXT list (one URL a line) is refused: it has no captions, and mining needs one per image.

    Raises:
        InputError: a missing or unreadable file, a missing column, no rows, or keys that are
            empty or not unique.
    """
    kind = _input_format(url_list, input_format)
    if kind == "txt":
        raise InputError(
            f"URL list {url_list} is a .txt list of bare URLs: it has no captions, and mining "
            "needs a caption for each image. Give a CSV, TSV or Parquet table with a header row "
            f"and a URL column ({url_col!r}) and a caption column ({caption_col!r})."
        )
    if not os.path.isfile(url_list):
        raise InputError(f"URL list {url_list} does not exist or is not a file")

    named = [url_col, caption_col] + ([key_col] if key_col else [])
    try:
        if kind == "parquet":
            table = pq.read_table(url_list)
        else:
            table = pacsv.read_csv(
                url_list,
                parse_options=pacsv.ParseOptions(
                    delimiter="\t" if kind == "tsv" else ",", newlines_in_values=True
                ),
                convert_options=pacsv.ConvertOptions(
                    column_types={name: pa.string() for name in named}
                ),
            )
    except (pa.ArrowInvalid, OSError) as err:
        raise InputError(f"URL list {url_list} is not a readable {kind} table: {err}") from err

    missing = [name for name in named if name not in table.column_names]
    if missing:
        raise InputError(
            f"URL list {url_list} has no column {', '.join(map(repr, missing))} (its columns: "
            f"{', '.join(table.column_names)}); name the right ones with url_col, caption_col, "
            "key_col (a CSV or TSV list needs a header row)"
        )
    if table.num_rows == 0:
        raise InputError(f"URL list {url_list} has no rows")

    columns = {
        "url": table[url_col].cast(pa.string()),
        "caption": table[caption_col].cast(pa.string()),
    }
    if key_col:
        keys = table[key_col].cast(pa.string())
        counts = Counter(keys.to_pylist())
        bad = [repr(k) for k, n in counts.items() if k is None or k == "" or n > 1]
        if bad:
            raise InputError(
                f"URL list {url_list}: key column {key_col!r} must hold a unique, non-empty key "
                f"on every row, but these are empty or repeated: {', '.join(bad[:5])}"
                + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
                + "; fix the list, or leave key_col unset to let img2dataset number the rows"
            )
        columns[_LIST_KEY] = keys
    extras = [name for name in table.column_names if name not in named]
    dropped = [name for name in extras if name in _RESERVED]
    if dropped:
        hint = " (pass key_col='key' to keep it as the image key)" if "key" in dropped else ""
        log.warning(
            "URL list %s: column(s) %s not kept, their names are taken by img2dataset's output%s",
            url_list,
            ", ".join(dropped),
            hint,
        )
    for name in extras:
        if name not in _RESERVED:
            columns[name] = table[name]
    return pa.table(columns)


def _fingerprint(urls: pa.Table) -> str:
    """A digest of what is fetched: each row's URL, caption and key."""
    digest = hashlib.sha256()
    names = [n for n in ("url", "caption", _LIST_KEY) if n in urls.column_names]
    for batch in urls.select(names).to_batches(max_chunksize=65536):
        for row in zip(*(batch.column(n).to_pylist() for n in names)):
            digest.update(json.dumps(row).encode())
            digest.update(b"\n")
    return digest.hexdigest()


def _table_rows(shard: Path, key_col: str | None, encode_format: str) -> pa.Table:
    """An img2dataset shard as the image table has it: sorted by key, the user key as `key`,
    the image column as `jpg`, and each row's error class."""
    table = pq.read_table(shard)
    table = table.sort_by("key")
    if key_col:
        names = [
            "img2dataset_key" if n == "key" else "key" if n == _LIST_KEY else n
            for n in table.column_names
        ]
        table = table.rename_columns(names)
    if encode_format != "jpg":  # the image table's column is `jpg` whatever the image format
        table = table.rename_columns(
            ["jpg" if n == encode_format else n for n in table.column_names]
        )
    classes = [
        classify_error(status, message)
        for status, message in zip(table["status"].to_pylist(), table["error_message"].to_pylist())
    ]
    position = table.schema.get_field_index("error_message") + 1
    return table.add_column(position, "error_class", pa.array(classes, pa.string()))


def _publish_ready(staging: Path, table_dir: Path, key_col: str | None, encode_format: str) -> int:
    """Move each shard that img2dataset finished (it has a stats file) into the table folder."""
    published = 0
    for stats in sorted(staging.glob("*_stats.json")):
        name = stats.name.removesuffix("_stats.json")
        source, target = staging / f"{name}.parquet", table_dir / f"{name}.parquet"
        if not target.exists():
            if not source.exists():
                # stats without its shard: drop the stats so that img2dataset fetches it again
                log.warning("img2dataset shard %s has stats but no Parquet; refetching it", name)
                stats.unlink()
                continue
            write_parquet(target, _table_rows(source, key_col, encode_format))
            published += 1
            log.debug("published image shard %s", target)
        source.unlink(missing_ok=True)
    return published


def _count(table_dir: Path) -> tuple[int, int, dict[str, int], int]:
    total = done = shards = 0
    failed: Counter[str] = Counter()
    for shard in sorted(table_dir.glob("*.parquet")):
        table = pq.read_table(shard, columns=["status", "error_class"])
        shards += 1
        total += table.num_rows
        for status, error_class in zip(
            table["status"].to_pylist(), table["error_class"].to_pylist()
        ):
            if status == "success":
                done += 1
            else:
                failed[error_class or "other"] += 1
    return total, done, dict(sorted(failed.items())), shards


@contextlib.contextmanager
def _locked(out_dir: Path) -> Iterator[int]:
    """Hold out_dir's lock; waits a little for the img2dataset of a just-killed run to die."""
    fd = os.open(out_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + _LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"another image fetch is writing to {out_dir} (it holds {out_dir}/.lock); "
                        "wait for it to end, or give this fetch another out_dir"
                    ) from None
                time.sleep(0.2)
        yield fd
    finally:
        os.close(fd)


def _log_tail(path: Path, chars: int = 3000) -> str:
    with open(path, "rb") as fh:
        fh.seek(max(0, path.stat().st_size - chars))
        return fh.read().decode(errors="replace")


def _run_img2dataset(params: dict, lock_fd: int, log_path: Path, publish: Callable[[], int]) -> int:
    """Run img2dataset in a child process, publishing finished shards while it runs."""
    env = {
        **os.environ,
        "NO_ALBUMENTATIONS_UPDATE": "1",  # albumentations asks the network for updates otherwise
        "WANDB_MODE": "disabled",
        "WANDB_SILENT": "true",
        "PYTHONUNBUFFERED": "1",
    }
    command = [sys.executable, "-c", _CHILD, json.dumps(params), str(os.getpid())]
    published = 0
    with open(log_path, "ab") as log_file:
        child = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            pass_fds=(lock_fd,),  # the lock stays held while the child lives
        )
        try:
            # wait without reaping: the child's id (its session's too) stays taken until killpg
            exited = os.WEXITED | os.WNOHANG | os.WNOWAIT
            while os.waitid(os.P_PID, child.pid, exited) is None:
                published += publish()
                time.sleep(0.5)
        finally:
            # the child's session also holds img2dataset's processes: none may outlive it
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    if child.returncode != 0:
        raise RuntimeError(
            f"img2dataset exited with status {child.returncode}; the end of its log "
            f"{log_path}:\n{_log_tail(log_path)}\nRerun the same fetch to resume it."
        )
    return published


def fetch_images(
    url_list: str,
    out_dir: str,
    *,
    allow_private: bool,
    url_col: str = "url",
    caption_col: str = "caption",
    key_col: str | None = None,
    input_format: str | None = None,
    image_size: int | None = None,
    resize_mode: str = "no",
    encode_format: str = "jpg",
    encode_quality: int = 95,
    processes: int = 1,
    threads: int = 16,
    timeout_s: float = 10.0,
    retries: int = 2,
    shard_size: int = 1000,
    max_shard_retry: int = 1,
    user_agent_token: str | None = None,
    progress: Callable[[dict], None] | None = None,
) -> FetchImagesResult:
    """Fetch the images of a URL list with img2dataset into an image table that mining reads.

    Every row of the list ends as one row of the table: with its image (status success), or
    with img2dataset's status and error_message and our error_class. A rerun on the same
    out_dir fetches only the shards that are not finished.

    Args:
        url_list: a CSV or TSV (with a header row) or Parquet file with a URL and a caption
            column; a .txt list is refused, as it has no captions.
        out_dir: the folder to fetch into; the table is `out_dir/table` (see the module doc).
        allow_private: fetch from loopback, private and link-local addresses too (a server
            on this machine, as in tests and the demo); otherwise such URLs refuse the list.
        url_col, caption_col: the list's URL and caption columns.
        key_col: a column of unique keys to use as the table's `key`; unset, img2dataset's
            row numbers are the keys.
        input_format: csv, tsv or parquet; unset, it comes from the file name.
        progress: called with the table's counts (shards and `of`, rows, done, failed by
            class, bytes) each time finished shards are published, while img2dataset runs.
        image_size, resize_mode: img2dataset's resizing; the default (`no`) keeps each image's
            size, and an image already in `encode_format` keeps its bytes.
        encode_format, encode_quality: the format images are stored in (the column is `jpg`
            whatever the format), and its quality.
        processes, threads: img2dataset's processes, and download threads in each.
        timeout_s: seconds without data before a request fails as a timeout.
        retries: times img2dataset repeats a failed request, at once, whatever the error.
        shard_size: URLs per shard, the unit of resume.
        max_shard_retry: times img2dataset reruns a shard that crashed.
        user_agent_token: added to img2dataset's User-Agent.

    Returns:
        The table's folder and its counts: done, failed by error class.

    Raises:
        InputError: a list that cannot be read or has a refused URL (mining.urls), or an
            out_dir that holds a fetch of another list or other settings.
        ValueError: a setting out of range.
        RuntimeError: img2dataset failed, or left shards unfinished; a rerun resumes.
    """
    if resize_mode not in RESIZE_MODES:
        raise ValueError(f"resize_mode {resize_mode!r} is not one of {', '.join(RESIZE_MODES)}")
    if resize_mode != "no" and (image_size is None or image_size < 1):
        raise ValueError(f"resize_mode {resize_mode!r} needs image_size, a positive integer")
    if encode_format not in ENCODE_FORMATS:
        raise ValueError(
            f"encode_format {encode_format!r} is not one of {', '.join(ENCODE_FORMATS)}"
        )
    for name, value, least in (
        ("processes", processes, 1),
        ("threads", threads, 1),
        ("retries", retries, 0),
        ("shard_size", shard_size, 1),
        ("max_shard_retry", max_shard_retry, 0),
    ):
        if value < least:
            raise ValueError(f"{name} must be at least {least}, got {value}")
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s}")
    if importlib.util.find_spec("img2dataset") is None:
        raise RuntimeError("img2dataset is not installed; pip install img2dataset==1.47.0")

    start = time.perf_counter()
    urls = read_url_list(
        url_list,
        url_col=url_col,
        caption_col=caption_col,
        key_col=key_col,
        input_format=input_format,
    )
    check_urls(urls["url"].to_pylist(), allow_private)

    root = Path(out_dir)
    table_dir, staging = root / "table", root / "img2dataset"
    n_shards = math.ceil(urls.num_rows / shard_size)
    settings = {
        "url_list": os.path.abspath(url_list),
        "rows": urls.num_rows,
        "fingerprint": _fingerprint(urls),
        "key_col": key_col,
        "shard_size": shard_size,
        "image_size": image_size if resize_mode != "no" else None,
        "resize_mode": resize_mode,
        "encode_format": encode_format,
        "encode_quality": encode_quality,
    }
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root) as lock_fd:
        record = root / "fetch.json"
        if record.exists():
            before = json.loads(record.read_text())["settings"]
            changed = [
                name
                for name in ("fingerprint", "rows", "key_col", *_PINNED)
                if before.get(name) != settings[name]
            ]
            if changed:
                raise InputError(
                    f"{out_dir} holds images fetched from another URL list or with other "
                    f"settings (changed: {', '.join(changed)}); fetch into a new out_dir, or "
                    f"delete {out_dir} to fetch again"
                )
        elif any(table_dir.glob("*.parquet")) or any(staging.glob("*_stats.json")):
            raise InputError(
                f"{out_dir} holds fetched shards but no fetch.json saying what they are; fetch "
                f"into a new out_dir, or delete {out_dir} to fetch again"
            )
        write_json(record, {"settings": settings, "counts": None})
        for stale in table_dir.glob(".*.tmp-*"):  # left by a killed atomic write
            stale.unlink()

        table_dir.mkdir(exist_ok=True)
        staging.mkdir(exist_ok=True)
        fetched = _publish_ready(staging, table_dir, key_col, encode_format)
        if len(list(table_dir.glob("*.parquet"))) < n_shards:
            write_parquet(root / "url_list.parquet", urls)
            extras = [n for n in urls.column_names if n not in _RESERVED]
            extras += [_LIST_KEY] if key_col else []
            params = {
                "url_list": str((root / "url_list.parquet").resolve()),
                "output_folder": str(staging.resolve()),
                "input_format": "parquet",
                "output_format": "parquet",
                "url_col": "url",
                "caption_col": "caption",
                "save_additional_columns": extras or None,
                "image_size": image_size or 256,  # unused when resize_mode is "no"
                "resize_mode": resize_mode,
                "encode_format": encode_format,
                "encode_quality": encode_quality,
                "skip_reencode": True,
                "processes_count": processes,
                "thread_count": threads,
                "number_sample_per_shard": shard_size,
                "oom_shard_count": max(5, len(str(n_shards - 1))),
                "timeout": timeout_s,
                "retries": retries,
                "extract_exif": False,
                "compute_hash": "sha256",
                "enable_wandb": False,
                "distributor": "multiprocessing",
                "incremental_mode": "incremental",
                "max_shard_retry": max_shard_retry,
                "user_agent_token": user_agent_token,
            }
            log.info(
                "images: fetching %d URLs in %d shards with img2dataset (log: %s)",
                urls.num_rows,
                n_shards,
                root / "img2dataset.log",
            )

            def publish() -> int:
                published = _publish_ready(staging, table_dir, key_col, encode_format)
                if published and progress is not None:
                    total, done, failed, shards = _count(table_dir)
                    progress(
                        {
                            "shards": shards,
                            "of": n_shards,
                            "rows": total,
                            "done": done,
                            "failed": failed,
                            "bytes": sum(p.stat().st_size for p in table_dir.glob("*.parquet")),
                        }
                    )
                return published

            fetched += _run_img2dataset(params, lock_fd, root / "img2dataset.log", publish)
            fetched += publish()

        total, done, failed, shards = _count(table_dir)
        if shards < n_shards:
            raise RuntimeError(
                f"img2dataset finished {shards} of {n_shards} image shards; the end of its log "
                f"{root / 'img2dataset.log'}:\n{_log_tail(root / 'img2dataset.log')}\n"
                "Rerun the same fetch to retry only the unfinished shards."
            )
        assert total == urls.num_rows, (total, urls.num_rows)
        result = FetchImagesResult(
            table_path=str(table_dir),
            total=total,
            done=done,
            failed=failed,
            shards=shards,
            fetched_shards=fetched,
            seconds=time.perf_counter() - start,
        )
        write_json(
            record,
            {
                "settings": settings,
                "counts": {"total": total, "done": done, "failed": failed, "shards": shards},
            },
        )
    log.info(
        "images: %d URLs, %d done, %d failed (%s); %d of %d shards fetched now, %.1f s; table %s",
        total,
        done,
        result.failed_total,
        ", ".join(f"{k} {v}" for k, v in failed.items()) or "none",
        fetched,
        shards,
        result.seconds,
        table_dir,
    )
    return result
