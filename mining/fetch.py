"""Fetching videos with yt-dlp: whole files or only sections, each failure sorted into a class.

A class says whether trying again can help: a rate limit, a server error, a timeout, a reset
connection or a truncated body are transient; a missing, forbidden, private or unavailable
video, a body that is no video, and a video over the size or duration limit are permanent.
Nothing here retries: the pipeline retries transient failures through Ray and waits out a
host's backoff before it does.

Downloads go to a private temp folder beside the destination and are moved into place only
once they probe as video, so a finished name never holds a partial file.
"""

from __future__ import annotations

import email.utils
import functools
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from mining.media import MediaError, ffmpeg_dir, probe

log = logging.getLogger(__name__)

TRANSIENT = frozenset(
    {"http_429", "http_5xx", "timeout", "connection", "truncated", "bot_check", "crashed"}
)
PERMANENT = frozenset(
    {
        "http_404",
        "http_403",
        "http_4xx",
        "private",
        "unavailable",
        "unsupported",
        "not_video",
        "too_long",
        "too_large",
        "other",
    }
)


class FetchError(Exception):
    """A fetch that failed: `klass` (see TRANSIENT, PERMANENT), a message, maybe Retry-After."""

    def __init__(self, klass: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"{klass}: {message}")
        self.klass, self.message, self.retry_after = klass, message, retry_after

    @property
    def transient(self) -> bool:
        return self.klass in TRANSIENT

    def __reduce__(self):  # crosses process boundaries (Ray) with its fields
        return type(self), (self.klass, self.message, self.retry_after)


@dataclass(frozen=True)
class FetchOptions:
    """What to fetch and through what; see FetchConfig for each field's meaning."""

    max_height: int = 720
    container: str = "mp4"
    max_duration_s: float = 3 * 3600.0
    max_filesize_mb: float = 2048.0
    timeout_s: float = 30.0
    cookies: str | None = None
    proxy: str | None = None


@dataclass(frozen=True)
class Fetched:
    path: str
    bytes: int
    seconds: float
    duration_s: float


_STATUS = re.compile(r"HTTP Error (\d{3})")
_MESSAGES = [
    (re.compile(r"timed out|Read timed out|TimeoutError", re.I), "timeout"),
    (re.compile(r"bytes read, \d+ more expected|IncompleteRead|incomplete", re.I), "truncated"),
    (
        re.compile(
            r"Connection (reset|refused|aborted|broken)|RemoteDisconnected|Errno 10[34]|"
            r"Connection to .* failed|Name or service not known",
            re.I,
        ),
        "connection",
    ),
    (re.compile(r"not a bot|confirm your age|rate.?limit", re.I), "bot_check"),
    (re.compile(r"Private video|members.only", re.I), "private"),
    (
        re.compile(r"unavailable|has been removed|not available|no longer available", re.I),
        "unavailable",
    ),
    (re.compile(r"Unsupported URL", re.I), "unsupported"),
    (re.compile(r"larger than max-filesize|File is larger", re.I), "too_large"),
]


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: a number, or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def classify(err: BaseException) -> FetchError:
    """Sort any error of a fetch into a FetchError with its class."""
    if isinstance(err, FetchError):
        return err
    cause = getattr(err, "exc_info", None)
    cause = cause[1] if cause and len(cause) > 1 else None
    text = re.sub(r"^ERROR:\s*", "", str(err).replace("\r", "")).strip()
    status = getattr(cause, "status", None)
    if status is None and (match := _STATUS.search(text)):
        status = int(match[1])
    if status is not None:
        retry_after = None
        response = getattr(cause, "response", None)
        if response is not None:
            retry_after = _retry_after(response.headers.get("Retry-After"))
        klass = {404: "http_404", 410: "http_404", 403: "http_403", 429: "http_429"}.get(status)
        if klass is None:
            klass = "http_5xx" if status >= 500 else "http_4xx"
        return FetchError(klass, text, retry_after)
    for pattern, klass in _MESSAGES:
        if pattern.search(text):
            return FetchError(klass, text)
    if isinstance(err, TimeoutError):
        return FetchError("timeout", text)
    if isinstance(err, ConnectionError):
        return FetchError("connection", text)
    return FetchError("other", text or type(err).__name__)


def _format(opts: FetchOptions) -> str:
    """yt-dlp's format choice: the best at most max_height, the preferred container first."""
    h = f"[height<=?{opts.max_height}]"
    if opts.container == "any":
        return f"bv*{h}+ba/b{h}/b"
    c = f"[ext={opts.container}]"
    return f"bv*{h}{c}+ba/b{h}{c}/bv*{h}+ba/b{h}/b"


def ydl_params(opts: FetchOptions, outtmpl: str) -> dict:
    """yt-dlp's parameters for fetches with opts; its own retries are off (the pipeline's
    Ray tasks retry)."""
    params = {
        "outtmpl": outtmpl,
        "format": _format(opts),
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "noplaylist": True,
        "logger": _Log(),
        "retries": 0,
        "fragment_retries": 0,
        "extractor_retries": 0,
        "socket_timeout": opts.timeout_s,
        "max_filesize": int(opts.max_filesize_mb * 2**20),
        "ffmpeg_location": ffmpeg_dir(),
        "overwrites": True,
        "continuedl": False,
        "nopart": False,
    }
    if opts.container in ("mp4", "webm", "mkv"):
        params["merge_output_format"] = opts.container
    if opts.cookies:
        params["cookiefile"] = opts.cookies
    if opts.proxy:
        params["proxy"] = opts.proxy
    return params


class _Log:
    """yt-dlp's messages go to this module's logger: its errors come back as FetchError."""

    def debug(self, msg: str) -> None:
        log.debug("yt-dlp: %s", msg)

    info = debug

    def warning(self, msg: str) -> None:
        log.debug("yt-dlp warning: %s", msg)

    error = warning


def _ffmpeg_on_path() -> None:
    """yt-dlp checks for ffmpeg on PATH before it downloads sections or merges formats."""
    folder = ffmpeg_dir()
    if folder not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = folder + os.pathsep + os.environ.get("PATH", "")


@functools.lru_cache(maxsize=4)
def _downloader(opts: FetchOptions):
    """One YoutubeDL per process and options, reused from fetch to fetch: building one costs
    about 0.1 s of CPU (its extractors, the certificate store), as much as a small fetch."""
    import yt_dlp

    _ffmpeg_on_path()
    return yt_dlp.YoutubeDL(ydl_params(opts, "%(id)s.%(ext)s"))


def _download(url: str, opts: FetchOptions, folder: str, ranges=None) -> str:
    """Run yt-dlp into folder, the whole video or only `ranges`; the path of the file it wrote."""
    ydl = _downloader(opts)
    ydl.params["paths"] = {"home": folder}
    if ranges is None:
        ydl.params.pop("download_ranges", None)
    else:
        ydl.params["download_ranges"] = ranges
    try:
        info = ydl.extract_info(url, download=True)
    except Exception as err:  # noqa: BLE001 - every yt-dlp failure gets a class
        raise classify(err) from err
    if info is None:
        raise FetchError("unavailable", f"yt-dlp found no video at {url}")
    if info.get("_type") == "playlist":
        raise FetchError("unsupported", f"{url} is a playlist; list its videos one by one")
    done = [d.get("filepath") for d in info.get("requested_downloads") or []]
    done = [p for p in done if p and os.path.isfile(p)]
    if not done:
        if info.get("filesize") or info.get("filesize_approx"):
            size = (info.get("filesize") or info.get("filesize_approx")) / 2**20
            raise FetchError("too_large", f"{url} is {size:.0f} MiB, over max_filesize_mb")
        raise FetchError("too_large", f"yt-dlp skipped {url} (over max_filesize_mb?)")
    return done[0]


def _check_video(path: str, url: str, max_duration_s: float):
    try:
        info = probe(path)
    except MediaError as err:
        raise FetchError("not_video", f"{url} gave no decodable video: {err}") from err
    if info.duration_s > max_duration_s:
        raise FetchError(
            "too_long", f"{url} lasts {info.duration_s:.0f}s, over max_duration_s {max_duration_s}"
        )
    return info


def fetch_video(url: str, video_id: str, dest_dir: str | Path, opts: FetchOptions) -> Fetched:
    """Fetch the whole video at url to dest_dir/<video_id>.<ext>; raises FetchError."""
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    tmp = tempfile.mkdtemp(prefix=f".{video_id}.tmp-", dir=dest_dir)
    try:
        got = _download(url, opts, tmp)
        info = _check_video(got, url, opts.max_duration_s)
        final = dest_dir / f"{video_id}{Path(got).suffix}"
        os.replace(got, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Fetched(
        path=str(final),
        bytes=final.stat().st_size,
        seconds=time.perf_counter() - started,
        duration_s=info.duration_s,
    )


def fetch_section(url: str, start: float, end: float, folder: str, opts: FetchOptions) -> str:
    """Fetch only [start, end) of the video at url (yt-dlp download ranges) into folder.

    The section is a stream copy: its packets start at the keyframe at or before `start`, and
    its edit list makes time 0 the first frame at or after `start`, so source time is
    `start + section time` within one frame. Returns the section's path; the caller owns folder.
    """
    from yt_dlp.utils import download_range_func

    got = _download(url, opts, folder, download_range_func(None, [(max(0.0, start), end)]))
    _check_video(got, url, float("inf"))
    return got
