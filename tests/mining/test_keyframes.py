"""mining.keyframes: decoding frames with timestamps, finding and refining shot boundaries."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from mining.keyframes import decode_frames, refine_cut, signature_distance
from mining.media import MediaError, ffmpeg_binary
from mining.select import needs_refinement
from pipeline.demo_corpus import load_truth

CUT_S = 2.6  # test_video: testsrc2 for 2.6 s, then mandelbrot
FRAME_S = 1 / 25


def run_ffmpeg(*args: str) -> None:
    """ffmpeg, quiet, overwriting (tests/conftest.py's helper; `import conftest` is ambiguous
    once tests/pipeline has a conftest too)."""
    subprocess.run([ffmpeg_binary(), "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def _decode(path: Path, **kwargs) -> tuple[list[float], list[np.ndarray], list[tuple]]:
    times, frames, boundaries = [], [], []
    for chunk in decode_frames(str(path), **kwargs):
        assert len(chunk.times) == len(chunk.frames)
        times += chunk.times
        frames += chunk.frames
        boundaries += chunk.boundaries
    return times, frames, boundaries


def test_fps_mode_times_and_exact_boundary(test_video: Path):
    times, frames, boundaries = _decode(test_video, mode="fps", fps=1.0)

    assert times == pytest.approx([0.0, 1.0, 2.0, 3.0, 4.0, 5.0], abs=1e-6)
    assert len(boundaries) == 1
    assert boundaries[0] == pytest.approx((CUT_S - FRAME_S, CUT_S), abs=1e-6)
    assert all(f.shape == (90, 160, 3) and f.dtype == np.uint8 for f in frames)


def test_fps_mode_samples_at_the_asked_rate(test_video: Path):
    times, _, _ = _decode(test_video, mode="fps", fps=5.0)

    assert len(times) == 30
    assert np.diff(times) == pytest.approx(np.full(29, 0.2), abs=1e-6)


def test_fps_mode_does_not_drift(test_video: Path):
    times, _, _ = _decode(test_video, mode="fps", fps=3.0)

    # the first frame at or after each k/3 s: 18 samples in 6 s, and 1.0 s is on the grid
    expected = [np.ceil(k / 3 * 25 - 1e-6) / 25 for k in range(18)]
    assert times == pytest.approx(expected, abs=1e-6)


def test_keyframes_mode_gives_keyframe_times_and_coarse_boundary(test_video: Path):
    times, frames, boundaries = _decode(test_video, mode="keyframes")

    assert times == pytest.approx([0.0, 1.0, 2.0, 3.0, 4.0, 5.0], abs=1e-6)
    assert len(frames) == 6
    assert len(boundaries) == 1
    lo, hi = boundaries[0]
    assert lo < CUT_S <= hi
    assert (lo, hi) == pytest.approx((2.0, 3.0), abs=1e-6)


def test_frame_height_scales_frames(test_video: Path):
    _, frames, _ = _decode(test_video, mode="keyframes", frame_height=46)
    assert {f.shape for f in frames} == {(46, 82, 3)}

    _, frames, _ = _decode(test_video, mode="keyframes", frame_height=720)
    assert {f.shape for f in frames} == {(90, 160, 3)}  # never upscaled


def test_frames_show_the_right_shot(test_video: Path):
    times, frames, _ = _decode(test_video, mode="fps", fps=1.0)
    first_shot = [f for t, f in zip(times, frames) if t < CUT_S]
    second_shot = [f for t, f in zip(times, frames) if t >= CUT_S]

    def distance(a, b):
        return signature_distance(a.astype(np.float32) / 255, b.astype(np.float32) / 255)

    # testsrc2 frames resemble each other far more than they resemble mandelbrot frames
    within = distance(first_shot[0], first_shot[1])
    across = min(distance(a, b) for a in first_shot for b in second_shot)
    assert within < across


@pytest.mark.parametrize("mode", ["fps", "keyframes"])
def test_chunking_gives_the_same_frames(test_video: Path, mode: str):
    whole = list(decode_frames(str(test_video), mode=mode, fps=5.0, chunk_frames=1000))
    chunks = list(decode_frames(str(test_video), mode=mode, fps=5.0, chunk_frames=2))

    assert len(whole) == 1
    assert len(chunks) == (len(whole[0].times) + 1) // 2
    assert all(len(c.times) == 2 for c in chunks[:-1])
    assert [t for c in chunks for t in c.times] == whole[0].times
    assert [b for c in chunks for b in c.boundaries] == whole[0].boundaries
    joined = np.stack([f for c in chunks for f in c.frames])
    assert np.array_equal(joined, np.stack(whole[0].frames))


def test_bad_mode_raises(test_video: Path):
    with pytest.raises(ValueError, match="'keyframes' or 'fps'"):
        next(decode_frames(str(test_video), mode="every"))


def test_refine_cut_finds_the_exact_cut(test_video: Path):
    assert refine_cut(str(test_video), 2.0, 3.0) == pytest.approx(CUT_S, abs=1e-3)
    assert refine_cut(str(test_video), CUT_S - FRAME_S, CUT_S) == pytest.approx(CUT_S, abs=1e-3)


@pytest.mark.parametrize("interval", [(0.0, 2.0), (3.0, 4.0), (4.0, 5.96)])
def test_refine_cut_without_a_cut_returns_none(test_video: Path, interval: tuple[float, float]):
    assert refine_cut(str(test_video), *interval) is None


@pytest.fixture(scope="module")
def ts_video(test_video: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """test_video remuxed to MPEG-TS, whose clock starts at 1.4 s."""
    path = tmp_path_factory.mktemp("ts") / "twoshots.ts"
    run_ffmpeg("-i", str(test_video), "-c", "copy", str(path))
    return path


@pytest.fixture(scope="module")
def vp9_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 s of VP9 WebM (YouTube's usual format), 25 fps, a keyframe every second."""
    path = tmp_path_factory.mktemp("webm") / "vp9.webm"
    run_ffmpeg(
        "-f", "lavfi", "-i", "testsrc2=size=160x90:rate=25:duration=3",
        "-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8",
        "-g", "25", "-keyint_min", "25", str(path),
    )  # fmt: skip
    return path


def test_start_time_offset_is_removed(ts_video: Path):
    times, _, boundaries = _decode(ts_video, mode="fps", fps=1.0)

    assert times[0] == pytest.approx(0.0, abs=0.05)
    assert np.diff(times) == pytest.approx(np.ones(5), abs=1e-6)
    assert len(boundaries) == 1
    lo, hi = boundaries[0]
    assert hi - lo == pytest.approx(FRAME_S, abs=1e-6)
    assert hi == pytest.approx(CUT_S, abs=0.05)

    _, _, coarse = _decode(ts_video, mode="keyframes")
    assert len(coarse) == 1
    assert refine_cut(str(ts_video), *coarse[0]) == pytest.approx(hi, abs=1e-3)


def test_refine_cut_on_mpegts_between_keyframes(ts_video: Path):
    _, _, exact = _decode(ts_video, mode="fps", fps=1.0)
    cut = exact[0][1]

    assert refine_cut(str(ts_video), cut - 0.5, cut + 0.5) == pytest.approx(cut, abs=1e-3)


def test_vp9_fps_mode(vp9_video: Path):
    times, frames, boundaries = _decode(vp9_video, mode="fps", fps=1.0)

    assert times == pytest.approx([0.0, 1.0, 2.0], abs=1e-6)
    assert boundaries == []


def test_vp9_keyframes_mode_gives_only_keyframes(vp9_video: Path):
    times, _, _ = _decode(vp9_video, mode="keyframes")

    assert times == pytest.approx([0.0, 1.0, 2.0], abs=1e-6)


@pytest.mark.parametrize("mode", ["fps", "keyframes"])
@pytest.mark.parametrize("name", ["zero", "truncated", "noindex", "notvideo", "audioonly"])
def test_bad_videos_raise_media_error(bad_videos: dict[str, Path], name: str, mode: str):
    with pytest.raises(MediaError) as err:
        for _ in decode_frames(str(bad_videos[name]), mode=mode):
            pass
    message = str(err.value)
    assert message
    if name == "audioonly":
        assert "no video stream" in message
    elif name == "truncated":
        assert "truncated" in message or "decoding failed" in message
    else:
        assert "cannot open as media" in message


def test_truncated_in_fps_mode_says_where_data_ends(bad_videos: dict[str, Path]):
    with pytest.raises(MediaError, match=r"truncated: data ends at \d+\.\ds of a stated 6\.0s"):
        for _ in decode_frames(str(bad_videos["truncated"]), mode="fps"):
            pass


def test_refine_cut_on_audio_only_raises(bad_videos: dict[str, Path]):
    with pytest.raises(MediaError, match="no video stream"):
        refine_cut(str(bad_videos["audioonly"]), 0.0, 1.0)


def test_demo_corpus_cuts(small_corpus: Path):
    """Every true cut of the demo videos is found, in both modes, and no motion is taken for one."""
    truth = load_truth(small_corpus)
    for video in truth["videos"]:
        path = small_corpus / video["file"]
        cuts = [shot["start_s"] for shot in video["shots"][1:]]
        frame_s = 1 / video["fps"]

        _, _, exact = _decode(path, mode="fps", fps=1.0)
        assert [hi for _, hi in exact] == pytest.approx(cuts, abs=1e-3), video["video_id"]
        assert all(hi - lo == pytest.approx(frame_s, abs=1e-3) for lo, hi in exact)

        _, _, coarse = _decode(path, mode="keyframes")
        assert len(coarse) == len(cuts), video["video_id"]
        refined = []
        for (lo, hi), cut in zip(coarse, cuts):
            assert lo < cut <= hi + 1e-6
            refined.append(refine_cut(str(path), lo, hi) if needs_refinement(lo, hi, 25) else hi)
        assert refined == pytest.approx(cuts, abs=1e-3), video["video_id"]
