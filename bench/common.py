"""What every benchmark shares: the media it runs on, the machine it ran on, and the timers.

Media live under bench/out/ (git-ignored) and are made once: the demo corpus of
`pipeline.demo_corpus` and one longer 1280x720 video for the decode figures. Timers measure wall
time and this process's CPU time (itself plus reaped children) and, from /proc/stat, how busy the
whole machine was meanwhile, so that work of other processes (contention) shows in the results.
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mining.media import ffmpeg_binary, probe
from pipeline.demo_corpus import IMAGES_FILE, VIDEOS_DIR, CorpusSpec, generate_corpus

BENCH_DIR = Path(__file__).resolve().parent
OUT_DIR = BENCH_DIR / "out"
CORPUS_DIR = OUT_DIR / "corpus"
LONG_VIDEO = OUT_DIR / "long720p.mp4"
LONG_VIDEO_SPEC = {"seconds": 120, "width": 1280, "height": 720, "fps": 25, "gop": 50}

# other processes using more than this share of one core during a measurement count as contention
CONTENTION_CORES = 0.25


def corpus() -> tuple[Path, Path]:
    """The demo corpus (6 videos x 40 s, 480x270) as (images.parquet, videos folder)."""
    images, videos = CORPUS_DIR / IMAGES_FILE, CORPUS_DIR / VIDEOS_DIR
    if not images.exists() or len(list(videos.glob("*.mp4"))) < CorpusSpec().n_videos:
        generate_corpus(CORPUS_DIR, CorpusSpec())
    return images, videos


def corpus_videos() -> list[Path]:
    return sorted(corpus()[1].glob("*.mp4"))


def long_video() -> Path:
    """A 120 s 1280x720 25 fps H.264 video (lavfi testsrc2, fixed GOP of 50, no scene cuts)."""
    if LONG_VIDEO.exists():
        return LONG_VIDEO
    s = LONG_VIDEO_SPEC
    tmp = LONG_VIDEO.with_name(".long720p.tmp.mp4")
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    source = f"testsrc2=size={s['width']}x{s['height']}:rate={s['fps']}:duration={s['seconds']}"
    command = [
        ffmpeg_binary(),
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        source,
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-pix_fmt",
        "yuv420p",
        "-g",
        str(s["gop"]),
        "-keyint_min",
        str(s["gop"]),
        "-sc_threshold",
        "0",
        "-f",
        "mp4",
        str(tmp),
    ]
    subprocess.run(command, check=True)
    os.replace(tmp, LONG_VIDEO)
    return LONG_VIDEO


def read_into_page_cache(paths: list[Path]) -> None:
    """Read files once so that the first timed decode does not pay for the disk."""
    for path in paths:
        with open(path, "rb") as fh:
            while fh.read(1 << 24):
                pass


def video_seconds(paths: list[Path]) -> float:
    return sum(probe(str(p)).duration_s for p in paths)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ffmpeg_version() -> str:
    out = subprocess.run([ffmpeg_binary(), "-version"], capture_output=True, text=True).stdout
    first = out.splitlines()[0] if out else "unknown"
    return first.split(" Copyright")[0]


def machine() -> dict[str, Any]:
    """Cores, memory, CPU model, Python, library and ffmpeg versions of this machine."""
    import av
    import faiss
    import numpy
    import scipy

    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 2**20, 1),
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "ffmpeg": _ffmpeg_version(),
        "ffmpeg_binary": ffmpeg_binary(),
        "pyav": av.__version__,
        "faiss": faiss.__version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
    }


def busy_cpu_s() -> float:
    """CPU seconds the whole machine has spent busy (not idle or iowait) since boot."""
    with open("/proc/stat") as fh:
        values = [int(x) for x in fh.readline().split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    """CPU seconds of this process and of its children that have been reaped."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


@dataclass
class Sample:
    """One timed run: wall seconds, own CPU seconds, and CPU seconds of everything else."""

    wall_s: float
    cpu_s: float
    other_cpu_s: float
    result: Any = None


def timed(fn: Callable[[], Any]) -> Sample:
    """Run fn once and measure it; `result` is what fn returned."""
    busy0, cpu0, t0 = busy_cpu_s(), own_cpu_s(), time.perf_counter()
    result = fn()
    wall = time.perf_counter() - t0
    cpu = own_cpu_s() - cpu0
    other = max(0.0, busy_cpu_s() - busy0 - cpu)
    return Sample(wall, cpu, other, result)


@dataclass
class Interleaved:
    """Samples of several named variants, run in turn (A, B, A, B, ...) for `repeats` rounds."""

    samples: dict[str, list[Sample]] = field(default_factory=dict)

    def run(
        self, variants: dict[str, Callable[[], Any]], repeats: int, warmup: bool = False
    ) -> Interleaved:
        """Time every variant `repeats` times in turn; `warmup` first runs each once untimed."""
        if warmup:
            for fn in variants.values():
                fn()
        for _ in range(repeats):
            for name, fn in variants.items():
                self.samples.setdefault(name, []).append(timed(fn))
        return self

    def wall(self, name: str) -> float:
        return statistics.median(s.wall_s for s in self.samples[name])

    def cpu(self, name: str) -> float:
        return statistics.median(s.cpu_s for s in self.samples[name])

    def result(self, name: str) -> Any:
        return self.samples[name][-1].result

    def summary(self, name: str) -> dict[str, Any]:
        runs = self.samples[name]
        return {
            "wall_s_median": round(self.wall(name), 4),
            "cpu_s_median": round(self.cpu(name), 4),
            "wall_s_all": [round(s.wall_s, 4) for s in runs],
            "repeats": len(runs),
        }

    def contention(self) -> dict[str, Any]:
        """How much CPU other processes used while these samples ran, in cores."""
        wall = sum(s.wall_s for runs in self.samples.values() for s in runs)
        other = sum(s.other_cpu_s for runs in self.samples.values() for s in runs)
        cores = other / wall if wall > 0 else 0.0
        return {
            "other_cores_mean": round(cores, 2),
            "contended": cores > CONTENTION_CORES,
            "loadavg_end": Path("/proc/loadavg").read_text().split()[:3],
        }


def rate(amount: float, seconds: float) -> float:
    return round(amount / seconds, 3) if seconds > 0 else float("nan")
