"""Fetch: the project's video fetching against plain yt-dlp, on the same files over loopback HTTP.

The demo corpus's 6 videos are served under 5 names each (30 URLs, hard links) by
`pipeline.httpserver.FileServer`, run in a subprocess so that serving costs neither the client's
CPU time nor its GIL. Per round, in turn:

* `ytdlp_api`, the baseline: one `yt_dlp.YoutubeDL` with yt-dlp's defaults (quiet, the same
  format choice as ours), `download(urls)` over the list one after another, as a script would;
* `ytdlp_cli`: `yt-dlp -a urls.txt` with the same format, one process per round;
* `fetch_video`: `mining.fetch.fetch_video` per URL, one after another (a YoutubeDL per call, a
  private temp folder, the probe): the per-call overhead without concurrency;
* `fetch_videos_cold`: the Ray pass `pipeline.fetching.fetch_videos` with the default fetch
  config (concurrency 8, per_host 4: 4 at once on this one host) into a fresh output root, as
  the interleaving leaves it: Ray has stopped the idle workers of the previous round, so the
  pass starts its workers again;
* `fetch_videos_warm`: the same pass right after an untimed pass over 16 of the URLs, so that its
  workers are up (they are stopped after about a second idle); what a long URL list sees.

Ray is embedded, 2 CPUs, started before any timing. Loopback has no latency and no bandwidth
limit, so this measures per-URL overhead and concurrency, not network throughput. A second
server sleeps 50 ms before answering each request, a stand-in for the round trip to a distant
host, where fetching several URLs at once pays off. Last, `fetch_section` of a 4 s span against
`fetch_video` of the whole file, bytes and seconds.

CPU seconds are this process's and its reaped children's, plus, for the Ray pass, every process
of the Ray instance (GCS, raylet, workers) sampled from /proc; the server's CPU time is apart.
Other cores busy is the machine's busy time less all of these. Bytes sent are what the server
wrote to its sockets (send buffer 64 KiB), which over-counts a little where a client hangs up on
a response it does not read to the end.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.request import urlopen

from common import BENCH_DIR, OUT_DIR, Interleaved, Sample, busy_cpu_s, own_cpu_s, rate

REPEATS = 3
NAMES_PER_VIDEO = 5
DELAY_S = 0.05
SECTION = (10.0, 14.0)
PRIME_URLS = 16  # fetched untimed before a warm Ray pass, so that its task slots have workers
SAMPLE_S = 0.1
SEND_BUFFER = 64 * 1024
TICK = os.sysconf("SC_CLK_TCK")
SERVE_DIR = OUT_DIR / "fetch-serve"
WORK_DIR = OUT_DIR / "fetch-run"
STATS_PATH = "/_stats"

log = logging.getLogger(__name__)


def _serve(root: str, delay_s: float) -> None:
    """Serve root until stdin closes; prints the base URL first. `/_stats` answers counters."""
    from pipeline.httpserver import FileServer

    class CountingWriter:
        def __init__(self, raw, server: FileServer) -> None:
            self.raw, self.server, self.counting = raw, server, True

        def write(self, data) -> int:
            written = self.raw.write(data)
            if self.counting:
                with self.server._lock:
                    self.server.bytes_sent += len(data)
            return written

        def __getattr__(self, name: str):
            return getattr(self.raw, name)

    class BenchServer(FileServer):
        def __init__(self, root: str, delay_s: float) -> None:
            self.delay_s, self.bytes_sent = delay_s, 0
            super().__init__(root)

        def _handler(self):
            base, server = super()._handler(), self

            class Handler(base):
                def setup(self) -> None:
                    self.request.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
                    super().setup()
                    self.wfile = CountingWriter(self.wfile, server)

                def _answer(self, body: bool) -> None:
                    if self.path == STATS_PATH:
                        self._stats()
                        return
                    if server.delay_s:
                        time.sleep(server.delay_s)
                    super()._answer(body)

                def _stats(self) -> None:
                    self.wfile.counting = False
                    with server._lock:
                        counts = {"requests": sum(server.requests.values())}
                        counts["bytes_sent"] = server.bytes_sent
                    payload = json.dumps(counts).encode()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    self.wfile.counting = True

            return Handler

    with BenchServer(root, delay_s) as server:
        print(server.base_url, flush=True)
        sys.stdin.read()


class Server:
    """The bench's file server in a subprocess: its URLs, request and byte counters, CPU time."""

    def __init__(self, root: Path, delay_s: float) -> None:
        self.delay_s = delay_s
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(root), "--delay", str(delay_s)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.base_url = self.process.stdout.readline().strip()
        if not self.base_url.startswith("http://"):
            self.close()
            raise RuntimeError(f"the bench file server did not start (said {self.base_url!r})")

    def url(self, name: str) -> str:
        return f"{self.base_url}/{name}"

    def stats(self) -> dict[str, int]:
        with urlopen(self.base_url + STATS_PATH, timeout=10) as response:
            return json.loads(response.read())

    def cpu_s(self) -> float:
        stat = _proc_stat(self.process.pid)
        return stat[1] if stat else 0.0

    def close(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _proc_stat(pid: int | str) -> tuple[int, float, int] | None:
    """(parent pid, user + system seconds, start time) of a process; None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    f = data[data.rindex(b")") + 2 :].split()  # f[0] is field 3 (state) of proc(5)
    return int(f[1]), (int(f[11]) + int(f[12])) / TICK, int(f[19])


def _pids() -> list[str]:
    return [p for p in os.listdir("/proc") if p.isdigit()]


class RayCpu:
    """CPU time of the Ray processes this process started (GCS, raylet, workers), from /proc.

    The roots are this process's children alive right after ray.init; everything below them
    counts. Workers are the raylet's children, which it never reaps, so getrusage misses them.
    While `watch()` is on, a thread samples every 0.1 s to catch workers that exit before the
    end of a measurement.
    """

    def __init__(self) -> None:
        me = os.getpid()
        self.roots = {int(p) for p in _pids() if (s := _proc_stat(p)) and s[0] == me}
        self.last: dict[tuple[int, int], float] = {}
        self.start: dict[tuple[int, int], float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        stats = {int(p): s for p in _pids() if (s := _proc_stat(p))}
        tree = self.roots & set(stats)
        while below := {pid for pid, s in stats.items() if s[0] in tree} - tree:
            tree |= below
        for pid in tree:
            self.last[(pid, stats[pid][2])] = stats[pid][1]

    def mark(self) -> None:
        self._sample()
        self.start = dict(self.last)

    def since_mark(self) -> tuple[float, int]:
        """CPU seconds of Ray's processes since mark(), and how many processes it started."""
        self._sample()
        cpu = sum(s - self.start.get(key, 0.0) for key, s in self.last.items())
        return cpu, sum(1 for key in self.last if key not in self.start)

    def watch(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def unwatch(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            self._sample()


@dataclass
class Variant:
    """A way to fetch the URL list: fn fetches into a fresh folder and returns the files."""

    fn: Callable[[], list[Path]]
    uses_ray: bool = False
    prepare: Callable[[], Any] | None = None  # run untimed right before fn


def _timed(variant: Variant, server: Server, ray_cpu: RayCpu) -> Sample:
    """Like common.timed, with Ray's processes counted for a Ray variant and the server apart."""
    if variant.prepare:
        variant.prepare()
    ray_cpu.mark()
    if variant.uses_ray:
        ray_cpu.watch()
    stats0, server0 = server.stats(), server.cpu_s()
    busy0, cpu0, t0 = busy_cpu_s(), own_cpu_s(), time.perf_counter()
    files = variant.fn()
    wall = time.perf_counter() - t0
    own, busy = own_cpu_s() - cpu0, busy_cpu_s() - busy0
    if variant.uses_ray:
        ray_cpu.unwatch()
    (ray_s, started), server_s = ray_cpu.since_mark(), server.cpu_s() - server0
    stats1 = server.stats()
    extra = {
        "files": files,
        "server_cpu_s": server_s,
        "ray_cpu_s": ray_s,
        "ray_processes_started": started,
        **{k: stats1[k] - stats0[k] for k in stats0},
    }
    cpu = own + (ray_s if variant.uses_ray else 0.0)
    return Sample(wall, cpu, max(0.0, busy - own - ray_s - server_s), extra)


def _serve_dir(videos: list[Path], names: int) -> list[Path]:
    """Hard links (copies where linking fails) of each video under `names` names."""
    SERVE_DIR.mkdir(parents=True, exist_ok=True)
    served = []
    for k in range(names):
        for video in videos:
            link = SERVE_DIR / f"{video.stem}-{k}{video.suffix}"
            if not link.exists():
                try:
                    os.link(video, link)
                except OSError:
                    shutil.copyfile(video, link)
            served.append(link)
    return served


def _fresh(name: str) -> Path:
    folder = WORK_DIR / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.mp4") if p.is_file())


def _variants(urls: list[str], ids: list[str], prime: list[str]) -> dict[str, Variant]:
    """Every way of fetching urls (saved as ids); `prime` are the URLs of a warm-up Ray pass."""
    import yt_dlp

    from mining.fetch import FetchOptions, fetch_video, ydl_params
    from pipeline.config import FetchConfig
    from pipeline.fetching import fetch_videos
    from pipeline.store import OutputRoot

    opts = FetchOptions()
    fmt = ydl_params(opts, "%(id)s.%(ext)s")["format"]
    cli = BENCH_DIR.parent / ".venv" / "bin" / "yt-dlp"
    cli_command = [str(cli)] if cli.exists() else [sys.executable, "-m", "yt_dlp"]

    def ytdlp_api() -> list[Path]:
        dest = _fresh("ytdlp_api")
        params = {"format": fmt, "outtmpl": f"{dest}/%(id)s.%(ext)s"}
        with yt_dlp.YoutubeDL({**params, "quiet": True, "noprogress": True}) as ydl:
            failed = ydl.download(urls)
        if failed:
            raise RuntimeError(f"yt-dlp's download() returned {failed}")
        return _files(dest)

    def ytdlp_cli() -> list[Path]:
        dest = _fresh("ytdlp_cli")
        listing = WORK_DIR / "urls.txt"
        listing.write_text("".join(f"{u}\n" for u in urls))
        command = [*cli_command, "-q", "--no-progress", "-f", fmt]
        command += ["-o", f"{dest}/%(id)s.%(ext)s", "-a", str(listing)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"yt-dlp exited {done.returncode}: {done.stderr[-2000:]}")
        return _files(dest)

    def fetch_serial() -> list[Path]:
        dest = _fresh("fetch_video")
        for url, video_id in zip(urls, ids):
            fetch_video(url, video_id, dest, opts)
        return _files(dest)

    def fetch_ray(name: str, pairs: list[tuple[str, str]]) -> list[Path]:
        root = OutputRoot(_fresh(name))
        videos = [{"video_id": i, "video_url": u, "path": None} for u, i in pairs]
        counts = fetch_videos(FetchConfig(allow_private=True), root, videos)
        if counts != {"done": len(pairs)}:
            raise RuntimeError(f"fetch_videos fetched {counts} of {len(pairs)} URLs")
        return _files(root.videos)

    pairs = list(zip(urls, ids))
    primed = [(u, f"prime-{k}") for k, u in enumerate(prime)]
    return {
        "ytdlp_api": Variant(ytdlp_api),
        "ytdlp_cli": Variant(ytdlp_cli),
        "fetch_video": Variant(fetch_serial),
        "fetch_videos_cold": Variant(lambda: fetch_ray("fetch_videos_cold", pairs), True),
        "fetch_videos_warm": Variant(
            lambda: fetch_ray("fetch_videos_warm", pairs),
            True,
            prepare=lambda: fetch_ray("prime", primed),
        ),
    }


def _measure(
    server: Server, served: list[Path], ray_cpu: RayCpu, repeats: int, only: tuple[str, ...]
) -> dict[str, Any]:
    """The variants `only` over the server's URLs, interleaved; rates, ratios, traffic."""
    urls = [server.url(p.name) for p in served]
    ids = [p.stem for p in served]
    want = sum(p.stat().st_size for p in served)
    variants = {k: v for k, v in _variants(urls, ids, urls[:PRIME_URLS]).items() if k in only}

    # untimed, on 2 URLs: imports, the page cache, the CLI's first start
    for name, warm in _variants(urls[:2], ids[:2], urls[:2]).items():
        if name in only:
            warm.fn()

    runs = Interleaved()
    for _ in range(repeats):
        for name, variant in variants.items():
            sample = _timed(variant, server, ray_cpu)
            files = sample.result["files"]
            got = sum(p.stat().st_size for p in files)
            if len(files) != len(urls) or got != want:
                raise RuntimeError(f"{name} fetched {len(files)} files, {got} of {want} bytes")
            runs.samples.setdefault(name, []).append(sample)
            log.info("%s, %.0f ms delay: %.2f s", name, server.delay_s * 1000, sample.wall_s)

    out: dict[str, Any] = {"urls": len(urls), "mib": round(want / 2**20, 2)}
    out["delay_s"] = server.delay_s
    for name in variants:
        wall, extra = runs.wall(name), [s.result for s in runs.samples[name]]

        def median(key: str, extra: list[dict] = extra) -> float:
            return statistics.median(e[key] for e in extra)

        out[name] = {
            **runs.summary(name),
            "urls_per_s": rate(len(urls), wall),
            "mib_per_s": rate(want / 2**20, wall),
            "cpu_s_per_url": round(runs.cpu(name) / len(urls), 4),
            "requests_per_url": round(median("requests") / len(urls), 2),
            "server_mib_sent": round(median("bytes_sent") / 2**20, 2),
            "server_cpu_s_median": round(median("server_cpu_s"), 3),
            "ray_cpu_s_median": round(median("ray_cpu_s"), 3),
            "ray_processes_started": [e["ray_processes_started"] for e in extra],
        }
    base = runs.wall("ytdlp_api")
    # how many times faster than one YoutubeDL over the list (URLs per second)
    out["ratio_vs_ytdlp_api"] = {n: round(base / runs.wall(n), 3) for n in variants}
    out["contention"] = runs.contention()
    shutil.rmtree(WORK_DIR, ignore_errors=True)
    return out


def _section(server: Server, video: Path, ray_cpu: RayCpu, repeats: int) -> dict[str, Any]:
    """fetch_section of SECTION against fetch_video of the whole file, same URL, interleaved."""
    from mining.fetch import FetchOptions, fetch_section, fetch_video
    from mining.media import probe

    url, opts = server.url(video.name), FetchOptions()

    def section() -> list[Path]:
        return [Path(fetch_section(url, *SECTION, str(_fresh("section")), opts))]

    def whole() -> list[Path]:
        return [Path(fetch_video(url, video.stem, _fresh("whole"), opts).path)]

    variants = {"section": Variant(section), "whole": Variant(whole)}
    for variant in variants.values():
        variant.fn()
    runs = Interleaved()
    for _ in range(repeats):
        for name, variant in variants.items():
            sample = _timed(variant, server, ray_cpu)
            sample.result["bytes"] = sample.result["files"][0].stat().st_size
            runs.samples.setdefault(name, []).append(sample)

    out: dict[str, Any] = {"video": video.name, "video_s": round(probe(str(video)).duration_s, 2)}
    out.update({"span": list(SECTION), "delay_s": server.delay_s})
    for name in variants:
        extra = [s.result for s in runs.samples[name]]
        out[name] = {
            **runs.summary(name),
            "file_kib": round(extra[-1]["bytes"] / 1024, 1),
            "requests": statistics.median(e["requests"] for e in extra),
            "server_kib_sent": round(statistics.median(e["bytes_sent"] for e in extra) / 1024, 1),
        }
    out["ratio_section_vs_whole_wall"] = round(runs.wall("whole") / runs.wall("section"), 3)
    out["section_bytes_sent_of_whole"] = round(
        out["section"]["server_kib_sent"] / out["whole"]["server_kib_sent"], 3
    )
    out["contention"] = runs.contention()
    shutil.rmtree(WORK_DIR, ignore_errors=True)
    return out


LOOPBACK = ("ytdlp_api", "ytdlp_cli", "fetch_video", "fetch_videos_cold", "fetch_videos_warm")
LATENCY = ("ytdlp_api", "fetch_video", "fetch_videos_warm")


def run(repeats: int = REPEATS, names: int = NAMES_PER_VIDEO) -> dict[str, Any]:
    import ray
    from common import corpus_videos

    from pipeline.config import RayConfig
    from pipeline.mine import init_ray

    videos = corpus_videos()
    served = _serve_dir(videos, names)
    started_ray = not ray.is_initialized()
    init_ray(RayConfig(num_cpus=2))
    ray_cpu = RayCpu()
    out: dict[str, Any] = {"videos": len(videos), "names_per_video": names}
    servers = [Server(SERVE_DIR, 0.0), Server(SERVE_DIR, DELAY_S)]
    try:
        out["loopback"] = _measure(servers[0], served, ray_cpu, repeats, LOOPBACK)
        out["latency"] = _measure(servers[1], served, ray_cpu, repeats, LATENCY)
        largest = max(served[: len(videos)], key=lambda p: p.stat().st_size)
        out["section_loopback"] = _section(servers[0], largest, ray_cpu, repeats)
        out["section_latency"] = _section(servers[1], largest, ray_cpu, repeats)
    finally:
        for server in servers:
            server.close()
        if started_ray:
            ray.shutdown()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--delay", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=REPEATS, help="interleaved rounds")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    if args.serve:
        _serve(args.serve, args.delay)
        return 0
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    result = run(args.repeats)
    text = json.dumps(result, indent=2)
    if args.json:
        Path(args.json).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
