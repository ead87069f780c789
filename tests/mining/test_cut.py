"""mining.cut: cutting clips with ffmpeg, verifying them, sampling JPEG frames."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from mining.cut import cut_clip, keyframe_at_or_before, sample_frames
from mining.media import MediaError, ffmpeg_binary, probe

FPS = 25
CUT_S = 2.6  # test_video's hard cut


def run_ffmpeg(*args: str) -> None:
    """ffmpeg, quiet, overwriting (tests/conftest.py's helper; `import conftest` is ambiguous
    once tests/pipeline has a conftest too)."""
    subprocess.run([ffmpeg_binary(), "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def _frames(path_or_bytes: Path | bytes) -> list[tuple[float, np.ndarray]]:
    source = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else str(path_or_bytes)
    with av.open(source) as container:
        return [
            (float(frame.pts * frame.time_base), frame.to_ndarray(format="rgb24"))
            for frame in container.decode(video=0)
        ]


def _stream_types(data: bytes) -> list[str]:
    with av.open(io.BytesIO(data)) as container:
        return [stream.type for stream in container.streams]


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB, the larger frame resized down to the smaller."""
    if a.shape[0] < b.shape[0]:
        a, b = b, a
    if a.shape != b.shape:
        a = np.asarray(Image.fromarray(a).resize((b.shape[1], b.shape[0]), Image.BICUBIC))
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.fixture(scope="module")
def source_frames(test_video: Path) -> dict[int, np.ndarray]:
    """test_video's frames by frame number."""
    return {round(t * FPS): frame for t, frame in _frames(test_video)}


@pytest.fixture(scope="module")
def reencoded(test_video: Path):
    return cut_clip(str(test_video), 1.0, CUT_S, mode="reencode")


def _write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "clip.mp4"
    path.write_bytes(data)
    return path


def test_reencode_starts_at_the_requested_frame(reencoded, source_frames):
    first = _frames(reencoded.data)[0][1]

    at = _psnr(first, source_frames[25])
    assert at > 25.0
    assert at >= _psnr(first, source_frames[24])
    assert at >= _psnr(first, source_frames[26])


def test_reencode_ends_before_the_next_shot(reencoded, source_frames):
    last = _frames(reencoded.data)[-1][1]

    assert _psnr(last, source_frames[64]) > 25.0  # 2.56 s, the last frame of shot one
    assert _psnr(last, source_frames[64]) > _psnr(last, source_frames[65]) + 10.0


def test_reencode_never_shows_the_second_shot(reencoded, source_frames):
    second_shot = [source_frames[n] for n in range(65, 70)]
    for _, frame in _frames(reencoded.data):
        assert max(_psnr(frame, other) for other in second_shot) < 15.0


def test_reencode_span_and_probe(reencoded, tmp_path: Path):
    info = probe(str(_write(tmp_path, reencoded.data)))

    assert info.duration_s == pytest.approx(CUT_S - 1.0, abs=1 / FPS)
    assert info.codec == "h264"
    assert (info.width, info.height) == (160, 90)
    assert reencoded.start_s == pytest.approx(1.0)
    assert reencoded.end_s == pytest.approx(CUT_S, abs=1 / FPS)
    assert reencoded.duration_s == pytest.approx(CUT_S - 1.0, abs=1 / FPS)
    assert (reencoded.width, reencoded.height) == (160, 90)
    assert reencoded.fps == pytest.approx(25.0)
    assert len(_frames(reencoded.data)) == 40


def test_reencode_scales_down_and_changes_rate(test_video: Path, source_frames):
    clip = cut_clip(str(test_video), 1.0, 2.0, max_height=60, fps=10.0, frames=3)

    decoded = _frames(clip.data)
    assert (clip.width, clip.height) == (106, 60)
    assert decoded[0][1].shape == (60, 106, 3)
    assert clip.fps == pytest.approx(10.0)
    assert len(decoded) == 10
    assert clip.duration_s == pytest.approx(1.0, abs=0.1)
    # at 10 fps the first frame stands for [1.0, 1.1): it shows a source frame from then
    best = max(range(20, 35), key=lambda n: _psnr(decoded[0][1], source_frames[n]))
    assert 25 <= best <= 27


def test_copy_starts_at_the_keyframe_before(test_video: Path, source_frames, tmp_path: Path):
    assert keyframe_at_or_before(str(test_video), 1.3) == pytest.approx(1.0)
    assert keyframe_at_or_before(str(test_video), 2.0) == pytest.approx(2.0)
    assert keyframe_at_or_before(str(test_video), 0.5) == pytest.approx(0.0)

    clip = cut_clip(str(test_video), 1.3, CUT_S, mode="copy")

    assert clip.start_s == pytest.approx(1.0)
    requested = CUT_S - 1.3
    assert requested - 1 / FPS <= clip.duration_s <= requested + 1.0
    assert clip.end_s == pytest.approx(clip.start_s + clip.duration_s)
    decoded = _frames(clip.data)
    assert _psnr(decoded[0][1], source_frames[25]) > 40.0  # the same bits: a stream copy
    info = probe(str(_write(tmp_path, clip.data)))
    assert info.duration_s == pytest.approx(clip.duration_s, abs=1 / FPS)


def test_copy_from_a_keyframe(test_video: Path, source_frames):
    clip = cut_clip(str(test_video), 2.0, 3.0, mode="copy", keep_audio=False)

    assert clip.start_s == pytest.approx(2.0)
    assert clip.duration_s == pytest.approx(1.0, abs=1 / FPS)
    assert _psnr(_frames(clip.data)[0][1], source_frames[50]) > 40.0
    assert _stream_types(clip.data) == ["video"]


def test_frames_are_jpegs_at_frame_height(test_video: Path):
    clip = cut_clip(str(test_video), 3.0, 5.0, frames=5, frame_height=64)

    assert len(clip.frames) == 5
    for data in clip.frames:
        image = Image.open(io.BytesIO(data))
        assert image.format == "JPEG"
        assert image.size == (114, 64)
        assert image.mode == "RGB"

    # never upscaled beyond the clip
    clip = cut_clip(str(test_video), 3.0, 4.0, frames=2, frame_height=500)
    assert [Image.open(io.BytesIO(d)).size for d in clip.frames] == [(160, 90)] * 2


def test_frames_are_spread_over_the_clip(test_video: Path, tmp_path: Path):
    clip = cut_clip(str(test_video), 1.0, 5.0, frames=4, frame_height=90)
    decoded = [frame for _, frame in _frames(clip.data)]
    jpegs = [np.asarray(Image.open(io.BytesIO(d))) for d in clip.frames]

    # sampled evenly: the first, the last and two between
    picked = [max(range(len(decoded)), key=lambda i: _psnr(j, decoded[i])) for j in jpegs]
    assert picked[0] == 0
    assert picked[-1] == len(decoded) - 1
    assert picked == sorted(picked) and len(set(picked)) == 4


def test_sample_frames_fewer_frames_than_asked(test_video: Path, tmp_path: Path):
    clip = cut_clip(str(test_video), 1.0, 1.2, frames=8)
    jpegs, measured = sample_frames(str(_write(tmp_path, clip.data)), 8, 90)

    assert len(jpegs) == measured["frames"] == 5
    assert measured["duration_s"] == pytest.approx(0.2)


def test_audio_kept_when_asked_and_present(reencoded, test_video: Path):
    assert _stream_types(reencoded.data) == ["video", "audio"]

    without = cut_clip(str(test_video), 1.0, 2.0, keep_audio=False)
    assert _stream_types(without.data) == ["video"]

    copied = cut_clip(str(test_video), 1.0, 2.0, mode="copy", keep_audio=True)
    assert sorted(_stream_types(copied.data)) == ["audio", "video"]


def test_no_audio_when_the_source_has_none(test_video: Path, tmp_path: Path):
    silent = tmp_path / "silent.mp4"
    run_ffmpeg("-i", str(test_video), "-an", "-c:v", "copy", str(silent))

    for mode in ("reencode", "copy"):
        clip = cut_clip(str(silent), 1.0, 2.0, mode=mode, keep_audio=True)
        assert _stream_types(clip.data) == ["video"]


def test_missing_source_raises(tmp_path: Path):
    with pytest.raises(MediaError, match="No such file"):
        cut_clip(str(tmp_path / "gone.mp4"), 0.0, 1.0)


@pytest.mark.parametrize("name", ["zero", "notvideo", "audioonly"])
def test_unusable_source_raises(bad_videos: dict[str, Path], name: str):
    with pytest.raises(MediaError):
        cut_clip(str(bad_videos[name]), 0.0, 1.0)


def test_empty_span_raises(test_video: Path):
    with pytest.raises(ValueError, match="empty span"):
        cut_clip(str(test_video), 2.0, 2.0)


def test_span_running_past_the_end_is_cut_short(test_video: Path):
    clip = cut_clip(str(test_video), 5.0, 9.0, keep_audio=False)

    assert clip.start_s == pytest.approx(5.0)
    assert clip.end_s == pytest.approx(6.0, abs=1 / FPS)
    assert clip.duration_s == pytest.approx(1.0, abs=1 / FPS)


@pytest.mark.parametrize("span", [(7.0, 8.0), (5.99, 7.0)])
def test_span_beyond_the_end_raises_media_error(test_video: Path, span):
    with pytest.raises(MediaError):
        cut_clip(str(test_video), *span, mode="reencode")


def test_copy_span_at_the_last_frame_gives_the_last_gop(test_video: Path):
    clip = cut_clip(str(test_video), 5.99, 7.0, mode="copy")

    assert clip.start_s == pytest.approx(5.0)
    assert clip.end_s == pytest.approx(6.0, abs=1 / FPS)


def test_copy_span_beyond_the_end_raises_media_error(test_video: Path):
    with pytest.raises(MediaError):
        cut_clip(str(test_video), 7.0, 8.0, mode="copy")


def test_span_past_the_data_of_a_truncated_source_raises_media_error(
    bad_videos: dict[str, Path],
):
    with pytest.raises(MediaError):
        cut_clip(str(bad_videos["truncated"]), 4.0, 5.0)
