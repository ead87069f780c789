"""Pass 0 (fetch): video URLs -> files under OUT/videos, one Ray task per URL.

Each URL ends with a record in OUT/fetch/<video_id>.json: done (path, bytes), failed with the
class of its last error (see mining.fetch), or quarantined. A transient failure (429, 5xx, a
timeout, a reset, a truncated body) is retried by Ray within the run, `fetch.retries` times,
after the host's backoff; a rerun retries it again, until `fetch.quarantine_after` runs have
failed it, and then never: quarantined URLs are listed in OUT/fetch/quarantine.txt. Permanent
failures (404, 403, private, unavailable, not a video, over a limit) are never retried.

Fetch tasks share one HostGate actor, which holds each host to `fetch.per_host` fetches at
once and `fetch.per_host_rate` starts per second, and pauses a host that answered with a
transient error: for its Retry-After, else for a backoff that doubles with each failure.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import ray

from mining.atomic import write_bytes, write_json
from mining.fetch import FetchError, FetchOptions, classify, fetch_video
from pipeline.config import FetchConfig
from pipeline.progress import Progress
from pipeline.store import OutputRoot

log = logging.getLogger(__name__)

# a fetch waits on the network, not the CPU: several share one core
FETCH_CPUS = 0.25
# a lease older than this is taken to belong to a fetch that died without releasing it
LEASE_S = 3600.0


def fetch_options(cfg: FetchConfig) -> FetchOptions:
    return FetchOptions(
        max_height=cfg.max_height,
        container=cfg.container,
        max_duration_s=cfg.max_duration_s,
        max_filesize_mb=cfg.max_filesize_mb,
        timeout_s=cfg.timeout_s,
        cookies=cfg.cookies,
        proxy=cfg.proxy,
    )


def host_of(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


@ray.remote(num_cpus=0)
class HostGate:
    """Per-host concurrency, start rate and backoff, shared by every fetch of a run."""

    def __init__(self, per_host: int, rate: float, backoff_s: float, max_backoff_s: float):
        self.per_host, self.rate = per_host, rate
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self.leases: dict[int, tuple[str, float]] = {}
        self.next_start: dict[str, float] = {}
        self.paused_until: dict[str, float] = {}
        self.streak: Counter[str] = Counter()
        self._ids = itertools.count()

    async def acquire(self, host: str) -> int:
        """Wait until host may take one more fetch; a lease id for release()."""
        while True:
            now = time.monotonic()
            self.leases = {k: v for k, v in self.leases.items() if now - v[1] < LEASE_S}
            busy = sum(1 for h, _ in self.leases.values() if h == host)
            wait = max(self.paused_until.get(host, 0.0) - now, self.next_start.get(host, 0.0) - now)
            if wait <= 0 and busy < self.per_host:
                lease = next(self._ids)
                self.leases[lease] = (host, now)
                if self.rate > 0:
                    self.next_start[host] = now + 1.0 / self.rate
                return lease
            await asyncio.sleep(min(max(wait, 0.02), 0.5))

    def release(self, lease: int, transient: bool = False, retry_after: float | None = None):
        """End a lease; a transient failure pauses its host before anyone tries it again."""
        host, _ = self.leases.pop(lease, ("", 0.0))
        if not transient:
            self.streak[host] = 0
            return
        self.streak[host] += 1
        pause = self.backoff_s * 2 ** (self.streak[host] - 1)
        if retry_after is not None:
            pause = retry_after
        until = time.monotonic() + min(pause, self.max_backoff_s)
        self.paused_until[host] = max(self.paused_until.get(host, 0.0), until)

    def paused(self, host: str) -> float:
        return max(0.0, self.paused_until.get(host, 0.0) - time.monotonic())


def gated(gate, url: str, work):
    """Run work() holding a lease on url's host; a transient FetchError pauses the host."""
    lease = ray.get(gate.acquire.remote(host_of(url)))
    try:
        result = work()
    except Exception as err:  # noqa: BLE001 - classified, and re-raised for Ray when transient
        failure = classify(err)
        ray.get(gate.release.remote(lease, failure.transient, failure.retry_after))
        raise failure from err
    ray.get(gate.release.remote(lease))
    return result


@ray.remote(num_cpus=FETCH_CPUS)
def _fetch_task(video: dict, folder: str, opts: FetchOptions, gate) -> dict:
    try:
        got = gated(
            gate,
            video["video_url"],
            lambda: fetch_video(video["video_url"], video["video_id"], folder, opts),
        )
    except FetchError as err:
        if err.transient:
            raise  # Ray retries it (retry_exceptions), after the host's pause
        return {"status": "failed", "class": err.klass, "transient": False, "error": err.message}
    return {
        "status": "done",
        "path": got.path,
        "bytes": got.bytes,
        "seconds": round(got.seconds, 3),
        "duration_s": got.duration_s,
    }


def _outcome(ref) -> dict:
    """A finished fetch task's record; a transient failure that outlived its retries too."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as err:
        failure = err.cause if isinstance(err.cause, FetchError) else classify(err)
    except ray.exceptions.RayError as err:  # the worker died: a transient failure of ours
        failure = FetchError("crashed", f"the fetch worker died: {err}")
    return {
        "status": "failed",
        "class": failure.klass,
        "transient": failure.transient,
        "error": failure.message,
    }


def plan_fetch(cfg: FetchConfig, out: OutputRoot, videos: list[dict]) -> list[dict]:
    """The URL videos to fetch in this run; fills in `path` of those fetched before."""
    found = out.read_manifest()
    todo = []
    for video in videos:
        if video["path"] is not None:
            continue
        path = out.fetch / f"{video['video_id']}.json"
        record = _read(path)
        if record is None or record.get("url") != video["video_url"]:
            todo.append(video)
        elif record["status"] == "done":
            if Path(record["path"]).exists() or video["video_id"] in found:
                video["path"] = record["path"]
            else:  # fetched but since deleted, and pass 1 still needs it
                todo.append(video)
        elif record["status"] == "quarantined" or not record["transient"]:
            continue  # settled: never retried
        elif record["runs"] >= cfg.quarantine_after:
            write_json(path, {**record, "status": "quarantined"})
        else:
            todo.append(video)
    return todo


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def fetch_videos(cfg: FetchConfig, out: OutputRoot, videos: list[dict]) -> dict:
    """Fetch every URL video that OUT does not hold yet; fills in `path` of fetched ones.

    Returns the fetch counts of this run. URL checks (schemes, private addresses) happen
    before, when the inputs are validated.
    """
    todo = plan_fetch(cfg, out, videos)
    out.fetch.mkdir(parents=True, exist_ok=True)
    counts: Counter[str] = Counter()
    if todo:
        opts = fetch_options(cfg)
        gate = HostGate.remote(cfg.per_host, cfg.per_host_rate, cfg.backoff_s, cfg.max_backoff_s)
        task = _fetch_task.options(max_retries=cfg.retries, retry_exceptions=[FetchError])
        progress = FetchProgress(len(todo))
        pending = iter(todo)
        in_flight: dict = {}
        while True:
            for video in itertools.islice(pending, cfg.concurrency - len(in_flight)):
                in_flight[task.remote(video, str(out.videos), opts, gate)] = video
            if not in_flight:
                break
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            video = in_flight.pop(ready[0])
            result = _outcome(ready[0])
            _record(out, video, result)
            counts[result["status"] if result["status"] == "done" else result["class"]] += 1
            progress.update(result)
        progress.close()
        ray.kill(gate)
    _write_quarantine(out)
    return dict(counts)


def _record(out: OutputRoot, video: dict, result: dict) -> None:
    path = out.fetch / f"{video['video_id']}.json"
    previous = _read(path) or {}
    runs = previous.get("runs", 0) + 1 if result["status"] != "done" else previous.get("runs", 0)
    record = {"video_id": video["video_id"], "url": video["video_url"], "runs": runs, **result}
    if result["status"] == "done":
        video["path"] = result["path"]
    write_json(path, record)


def summarize_fetch(out: OutputRoot) -> dict:
    """URLs fetched, failed by class, quarantined, and each failure's reason."""
    fetched = out.read_fetch()
    failed = {k: v for k, v in fetched.items() if v["status"] != "done"}
    return {
        "urls": len(fetched),
        "done": len(fetched) - len(failed),
        "failed_by_class": dict(Counter(v["class"] for v in failed.values())),
        "quarantined": sorted(k for k, v in failed.items() if v["status"] == "quarantined"),
        "failures": {k: f"{v['class']}: {v['error']}" for k, v in failed.items()},
    }


def _write_quarantine(out: OutputRoot) -> None:
    quarantined = [r["url"] for r in out.read_fetch().values() if r["status"] == "quarantined"]
    target = out.fetch / "quarantine.txt"
    if quarantined or target.exists():
        write_bytes(target, "".join(f"{u}\n" for u in quarantined).encode())


class FetchProgress(Progress):
    """The fetch's progress line: done, failed by class, bytes, rate, ETA."""

    def __init__(self, total: int, every: float = 2.0, stream=None) -> None:
        super().__init__("fetch", total, "videos", every=every, stream=stream)
        self.bytes = 0
        self.classes: Counter[str] = Counter()

    def update(self, result: dict) -> None:  # type: ignore[override]
        if result["status"] == "done":
            self.bytes += result["bytes"]
        else:
            self.classes[result["class"]] += 1
        elapsed = max(time.monotonic() - self.started, 1e-6)
        failed = ", ".join(f"{k} {v}" for k, v in sorted(self.classes.items()))
        extra = f"{self.bytes / 2**20:.1f} MiB at {self.bytes / 2**20 / elapsed:.2f} MiB/s"
        if failed:
            extra += f" | {failed}"
        super().update(
            done=int(result["status"] == "done"),
            failed=int(result["status"] != "done"),
            extra=extra,
        )


class ImageFetchProgress:
    """The image fetch's progress line, from img2dataset's finished shards: shards, images done,
    failed by class, bytes, rate, ETA."""

    def __init__(self, every: float = 2.0, stream=None) -> None:
        self.every, self.stream = every, stream
        self.line: Progress | None = None
        self.started = time.monotonic()  # the fetch starts now; its first shard comes later

    def update(self, counts: dict) -> None:
        if self.line is None:
            self.line = Progress("fetch images", counts["of"], "shards", self.every, self.stream)
            self.line.started = self.started
        elapsed = max(time.monotonic() - self.line.started, 1e-6)
        mib = counts["bytes"] / 2**20
        extra = (
            f"{counts['done']}/{counts['rows']} images | {mib:.1f} MiB at {mib / elapsed:.2f} MiB/s"
        )
        if counts["failed"]:
            extra += " | " + ", ".join(f"{k} {v}" for k, v in sorted(counts["failed"].items()))
        self.line.update(done=counts["shards"] - self.line.done, extra=extra)

    def close(self) -> None:
        if self.line is not None:
            self.line.close()
