"""mining.media: locating ffmpeg and probing files with PyAV."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from mining.media import MediaError, ffmpeg_binary, probe


def run_ffmpeg(*args: str) -> None:
    """ffmpeg, quiet, overwriting (tests/conftest.py's helper; `import conftest` is ambiguous
    once tests/pipeline has a conftest too)."""
    subprocess.run([ffmpeg_binary(), "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def test_ffmpeg_binary_runs():
    result = subprocess.run(
        [ffmpeg_binary(), "-hide_banner", "-version"], capture_output=True, text=True, check=True
    )
    assert result.stdout.startswith("ffmpeg version")


def test_ffmpeg_binary_has_the_encoders_cut_needs():
    result = subprocess.run(
        [ffmpeg_binary(), "-hide_banner", "-encoders"], capture_output=True, text=True, check=True
    )
    assert " libx264 " in result.stdout
    assert " aac " in result.stdout


def test_probe_test_video(test_video: Path):
    info = probe(str(test_video))

    assert info.duration_s == pytest.approx(6.0, abs=0.04)
    assert (info.width, info.height) == (160, 90)
    assert info.fps == pytest.approx(25.0)
    assert info.has_audio is True
    assert info.codec == "h264"
    assert info.start_s == pytest.approx(0.0, abs=1e-6)


def test_probe_video_without_audio(test_video: Path, tmp_path: Path):
    silent = tmp_path / "silent.mp4"
    run_ffmpeg("-i", str(test_video), "-an", "-c:v", "copy", str(silent))

    info = probe(str(silent))

    assert info.has_audio is False
    assert (info.width, info.height) == (160, 90)


@pytest.mark.parametrize("name", ["zero", "noindex", "notvideo"])
def test_probe_unreadable_file_raises(bad_videos: dict[str, Path], name: str):
    with pytest.raises(MediaError, match="cannot open as media") as err:
        probe(str(bad_videos[name]))
    assert bad_videos[name].name in str(err.value)


def test_probe_audio_only_says_no_video_stream(bad_videos: dict[str, Path]):
    with pytest.raises(MediaError, match=r"no video stream \(has audio\)"):
        probe(str(bad_videos["audioonly"]))


def test_probe_missing_file_raises(tmp_path: Path):
    with pytest.raises(MediaError, match="No such file"):
        probe(str(tmp_path / "nothing.mp4"))
