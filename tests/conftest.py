"""Shared fixtures: tiny media made with the real ffmpeg, the small demo corpus, and one embedded
Ray for the session with that corpus mined on it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import ray

from mining.media import ffmpeg_binary
from pipeline.config import load_config
from pipeline.demo_corpus import CorpusSpec, generate_corpus
from pipeline.mine import MineResult, mine


def run_ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_binary(), "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small demo corpus (2 videos, 15 s, 320x180): videos/, images.parquet, truth.json."""
    return generate_corpus(tmp_path_factory.mktemp("corpus"), CorpusSpec.small())


@pytest.fixture(scope="session")
def test_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 s, 25 fps, 160x90, GOP of 25 frames without scene cuts, a hard cut at 2.6 s, audio."""
    path = tmp_path_factory.mktemp("media") / "twoshots.mp4"
    run_ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=160x90:rate=25:duration=2.6",
        "-f",
        "lavfi",
        "-i",
        "mandelbrot=size=160x90:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:duration=6",
        "-filter_complex",
        "[1:v]trim=duration=3.4,setpts=PTS-STARTPTS[b];[0:v][b]concat=n=2:v=1[v]",
        "-map",
        "[v]",
        "-map",
        "2:a",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-g",
        "25",
        "-keyint_min",
        "25",
        "-sc_threshold",
        "0",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-shortest",
        "-movflags",
        "+faststart",
        str(path),
    )
    return path


@pytest.fixture(scope="session")
def bad_videos(tmp_path_factory: pytest.TempPathFactory, test_video: Path) -> dict[str, Path]:
    """Files that look like videos but are not usable: each must end as a recorded failure."""
    folder = tmp_path_factory.mktemp("bad")
    zero = folder / "zero.mp4"
    zero.write_bytes(b"")
    truncated = folder / "truncated.mp4"
    data = test_video.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])  # moov first: opens, then data ends early
    no_index = folder / "noindex.mp4"
    run_ffmpeg("-i", str(test_video), "-c", "copy", str(no_index))
    no_index.write_bytes(no_index.read_bytes()[: no_index.stat().st_size // 2])  # moov lost
    text = folder / "notvideo.mp4"
    text.write_text("this is a text file, not a video\n" * 50)
    audio = folder / "audioonly.mp4"
    run_ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=2", "-c:a", "aac", str(audio))
    return {
        "zero": zero,
        "truncated": truncated,
        "noindex": no_index,
        "notvideo": text,
        "audioonly": audio,
    }


@pytest.fixture(scope="session")
def ray_session():
    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def mined(small_corpus: Path, tmp_path_factory: pytest.TempPathFactory, ray_session) -> MineResult:
    """The small corpus mined once, uninterrupted, with default settings but small shards."""
    out = tmp_path_factory.mktemp("mined") / "out"
    return mine(
        str(small_corpus / "images.parquet"),
        str(small_corpus / "videos"),
        str(out),
        load_config(overrides=["shards.max_rows=3", "ray.num_cpus=2"]),
    )
