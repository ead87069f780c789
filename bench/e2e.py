"""End to end: minutes of video mined per CPU-minute by the real `vcc mine` on the demo corpus.

`vcc mine` runs as a subprocess in a new session, into a fresh output root, with its embedded
Ray (`init_ray` passes address "local", so a `ray start` cluster of a concurrent test is not
joined). Its CPU time is counted three ways, because Ray's workers are children of the raylet,
whose reaped-children time stays zero (it does not account its workers to itself), so
`getrusage(RUSAGE_CHILDREN)` around the subprocess misses most of the work:

* `rusage_children`: what getrusage(RUSAGE_CHILDREN) sees (a lower bound);
* `session_sampled` (the figure used): /proc sampled every 0.1 s for every process of the run's
  session (driver, GCS, raylet, Ray workers, ffmpeg): each one's last user+system time, plus
  whatever part of its reaped-children time its sampled children do not already account for;
* `wall_x_cores`: wall time times the machine's cores (an upper bound).

Pass times come from the run's log (`embedded ... in Xs`, the final `pass 1`/`pass 2` progress
lines) and its stats.json.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import BENCH_DIR, OUT_DIR, busy_cpu_s, corpus, video_seconds

SAMPLE_S = 0.1
LINGER_S = 20.0  # how long to keep counting session processes that outlive the driver
TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class _Proc:
    pid: int
    ppid: int
    own_s: float  # user + system
    reaped_s: float  # cutime + cstime: children it has waited for
    comm: str
    last_seen: int = 0
    gone_at: int | None = None


def _read_stat(pid: str) -> tuple[tuple[int, int], _Proc, int] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    paren = data.rindex(b")")
    comm = data[data.index(b"(") + 1 : paren].decode(errors="replace")
    f = data[paren + 2 :].split()  # f[0] is field 3 (state) of proc(5)
    session = int(f[3])
    own = (int(f[11]) + int(f[12])) / TICK
    reaped = (int(f[13]) + int(f[14])) / TICK
    key = (int(pid), int(f[19]))  # pid and start time: a reused pid is another process
    return key, _Proc(int(pid), int(f[1]), own, reaped, comm), session


class SessionCpu:
    """Samples the CPU time of every process of one session until it is stopped."""

    def __init__(self, session: int) -> None:
        self.session = session
        self.procs: dict[tuple[int, int], _Proc] = {}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> SessionCpu:
        self._thread.start()
        return self

    def _sample(self) -> int:
        self.samples += 1
        alive = 0
        seen = set()
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            read = _read_stat(pid)
            if read is None or read[2] != self.session:
                continue
            key, proc, _ = read
            proc.last_seen = self.samples
            self.procs[key] = proc
            seen.add(key)
            alive += 1
        for key, proc in self.procs.items():
            if key not in seen and proc.gone_at is None:
                proc.gone_at = self.samples
        return alive

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._sample()
            time.sleep(SAMPLE_S)

    def stop_when_empty(self, linger_s: float) -> int:
        """Stop sampling once no process of the session is left, or after linger_s."""
        deadline = time.monotonic() + linger_s
        while time.monotonic() < deadline and self._alive():
            time.sleep(SAMPLE_S)
        self._stop.set()
        self._thread.join()
        return self._sample()

    def _alive(self) -> bool:
        return any(p.gone_at is None for p in self.procs.values())

    def total_s(self) -> float:
        """Own time of every process seen, plus the part of each one's reaped-children time that
        its sampled children do not already account for (their time after the last sample, and
        children too short-lived to be sampled).

        A parent that ignores SIGCHLD (the raylet) gets no reaped time for its children, hence
        the clamp at zero rather than a plain subtraction.
        """
        keys_by_pid: dict[int, list[tuple[int, int]]] = {}
        for key, proc in self.procs.items():
            keys_by_pid.setdefault(proc.pid, []).append(key)
        counted: dict[tuple[int, int], float] = {key: 0.0 for key in self.procs}
        for child in self.procs.values():
            if child.gone_at is None:
                continue
            for key in keys_by_pid.get(child.ppid, []):
                if self.procs[key].last_seen >= child.gone_at:  # alive when the child went
                    counted[key] += child.own_s + child.reaped_s
                    break
        return sum(p.own_s + max(0.0, p.reaped_s - counted[key]) for key, p in self.procs.items())

    def top(self, n: int = 8) -> list[dict[str, Any]]:
        procs = sorted(self.procs.values(), key=lambda p: -p.own_s)[:n]
        return [{"comm": p.comm, "pid": p.pid, "cpu_s": round(p.own_s, 2)} for p in procs]


def _reap_orphans() -> int:
    reaped = 0
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return reaped
        if pid == 0:
            return reaped
        reaped += 1


def _pass_times(log: str) -> dict[str, float]:
    times: dict[str, float] = {}
    embedded = re.search(r"embedded \d+ images .* in ([\d.]+)s", log)
    if embedded:
        times["embed_images_and_index_s"] = float(embedded.group(1))
    for name, label in (("pass1_find_s", "pass 1 (find)"), ("pass2_cut_s", "pass 2 (cut)")):
        found = re.findall(re.escape(label) + r":[^\n]*\| (\d+)s\n", log)
        if found:
            times[name] = float(found[-1])
    return times


def run(out_dir: Path | None = None) -> dict[str, Any]:
    images, videos = corpus()
    out = out_dir or OUT_DIR / "e2e-run"
    shutil.rmtree(out, ignore_errors=True)
    seconds = video_seconds(sorted(videos.glob("*.mp4")))
    vcc = BENCH_DIR.parent / ".venv" / "bin" / "vcc"
    command = [
        str(vcc),
        "mine",
        "--images",
        str(images),
        "--videos",
        str(videos),
        "--out",
        str(out),
    ]

    usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy0, t0 = busy_cpu_s(), time.perf_counter()
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    sampler = SessionCpu(process.pid).start()
    log, _ = process.communicate()
    wall = time.perf_counter() - t0
    left = sampler.stop_when_empty(LINGER_S)
    busy = busy_cpu_s() - busy0
    orphans = _reap_orphans()
    usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if process.returncode != 0:
        raise RuntimeError(f"vcc mine failed (exit {process.returncode}):\n{log[-3000:]}")

    cores = os.cpu_count() or 1
    rusage_s = (usage1.ru_utime + usage1.ru_stime) - (usage0.ru_utime + usage0.ru_stime)
    sampled_s = sampler.total_s()
    stats = json.loads((out / "stats.json").read_text())
    manifest = [json.loads(p.read_text()) for p in sorted((out / "manifest").glob("*.json"))]
    video_min, cpu_min = seconds / 60, sampled_s / 60
    return {
        "command": " ".join(command),
        "video_s": round(seconds, 1),
        "wall_s": round(wall, 2),
        "cpu_s": {
            "session_sampled": round(sampled_s, 2),
            "rusage_children": round(rusage_s, 2),
            "wall_x_cores": round(wall * cores, 2),
            "machine_busy": round(busy, 2),
        },
        "cpu_measure_used": "session_sampled",
        "other_cores_mean": round(max(0.0, busy - sampled_s) / wall, 2),
        "video_min_per_cpu_min": round(video_min / cpu_min, 3),
        "video_min_per_cpu_min_upper_bound_cpu": round(video_min / (wall * cores / 60), 3),
        "video_min_per_wall_min": round(seconds / wall, 3),
        "passes": {**_pass_times(log), "stats_seconds": stats.get("seconds")},
        "decode_s_sum": round(sum(m.get("decode_s", 0.0) for m in manifest), 2),
        "clips": stats["clips"],
        "spans": stats["spans"],
        "videos_done": stats["videos_done"],
        "processes_seen": len(sampler.procs),
        "processes_left_after_linger": left,
        "orphans_reaped": orphans,
        "top_processes": sampler.top(),
        "log_tail": log.strip().splitlines()[-3:],
    }
