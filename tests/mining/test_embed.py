"""mining.embed: the weight-free DCT embedder, frame windows, and the open_clip embedder."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image, ImageEnhance, ImageOps

from mining.embed import DctEmbedder, OpenClipEmbedder, frame_windows, l2_normalize
from mining.images import decode_image

PHOTOS = ("astronaut", "camera", "chelsea", "coffee", "rocket")


def _photo(name: str) -> Image.Image:
    array = getattr(skimage.data, name)()
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    return Image.fromarray(np.ascontiguousarray(array[:, :, :3]))


def _recolour(image: Image.Image, how: str) -> Image.Image:
    if how == "hue":
        hue, sat, val = image.convert("HSV").split()
        return Image.merge("HSV", (hue.point(lambda h: (h + 100) % 256), sat, val)).convert("RGB")
    if how == "saturation":
        return ImageEnhance.Color(image).enhance(0.3)
    if how == "gamma":
        return image.point([round(255 * (i / 255) ** 1.6) for i in range(256)] * 3)
    if how == "brightness_contrast":
        brighter = ImageEnhance.Brightness(image).enhance(1.3)
        return ImageEnhance.Contrast(brighter).enhance(0.7)
    if how == "grayscale":
        return image.convert("L")  # saved as a one-channel JPEG
    assert how == "none"
    return image


def _caption_image(
    photo: Image.Image,
    position: tuple[float, float],
    scale: float,
    colour: str,
    flip: bool,
    area: float = 0.6,
) -> np.ndarray:
    """A caption image as the web makes them: crop `area` of the frame, rescale, recolour,
    maybe mirror, JPEG q=40; decoded the way the pipeline decodes image bytes."""
    width, height = photo.size
    crop_w, crop_h = round(width * np.sqrt(area)), round(height * np.sqrt(area))
    left = round(position[0] * (width - crop_w))
    top = round(position[1] * (height - crop_h))
    image = photo.crop((left, top, left + crop_w, top + crop_h))
    image = image.resize((round(crop_w * scale), round(crop_h * scale)), Image.Resampling.BICUBIC)
    image = _recolour(image, colour)
    if flip:
        image = ImageOps.mirror(image)
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=40)
    return decode_image(buf.getvalue())


# photo, crop position (fraction of the slack), rescale, recolour, flipped
CAPTIONS = [
    ("astronaut", (0.0, 0.0), 1.5, "saturation", True),
    ("astronaut", (0.25, 0.0), 0.7, "grayscale", False),
    ("camera", (0.0, 1.0), 0.8, "brightness_contrast", True),
    ("chelsea", (1.0, 0.0), 1.3, "grayscale", True),
    ("coffee", (1.0, 1.0), 0.6, "gamma", False),
    ("coffee", (0.75, 0.25), 1.2, "hue", True),
    ("rocket", (0.25, 0.75), 1.0, "hue", False),
]


@pytest.fixture(scope="module")
def dct() -> DctEmbedder:
    return DctEmbedder()


@pytest.fixture(scope="module")
def photo_windows(dct: DctEmbedder) -> dict[str, np.ndarray]:
    """[V, D] window embeddings of each photo shown whole as a video frame."""
    return {name: dct.embed_frames([np.asarray(_photo(name))])[0] for name in PHOTOS}


def _index_entry(dct: DctEmbedder, caption: np.ndarray, flipped: bool) -> np.ndarray:
    """The index row that should match: the mirrored embedding for a flipped caption image,
    made as the image stage makes it (`im[:, ::-1]`)."""
    return dct.embed_images([caption[:, ::-1] if flipped else caption])[0]


def test_frame_windows_count_and_bounds():
    boxes = frame_windows((1.0, 0.8, 0.5), grid=3)

    assert len(boxes) == 1 + 9 + 9
    assert boxes[0] == (0.0, 0.0, 1.0, 1.0)
    for left, top, right, bottom in boxes:
        assert 0.0 <= left < right <= 1.0 + 1e-9
        assert 0.0 <= top < bottom <= 1.0 + 1e-9
        assert right - left == pytest.approx(bottom - top)
    sides = sorted({round(right - left, 6) for left, _, right, _ in boxes})
    assert sides == [0.5, 0.8, 1.0]
    half = [b for b in boxes if b[2] - b[0] == pytest.approx(0.5)]
    assert sorted({round(b[0], 6) for b in half}) == [0.0, 0.25, 0.5]
    assert sorted({round(b[1], 6) for b in half}) == [0.0, 0.25, 0.5]


def test_frame_windows_grid_one_and_default_count(dct: DctEmbedder):
    assert frame_windows((1.0, 0.7), grid=1) == [(0.0, 0.0, 1.0, 1.0), (0.0, 0.0, 0.7, 0.7)]
    default = frame_windows(dct.window_scales, dct.window_grid)
    assert len(default) == 1 + (len(dct.window_scales) - 1) * dct.window_grid**2


@pytest.mark.parametrize("scale", [0.0, -0.5, 1.2])
def test_frame_windows_rejects_bad_scale(scale: float):
    with pytest.raises(ValueError, match="window scale must be in"):
        frame_windows((1.0, scale), grid=2)


def test_dct_shapes_norms_and_determinism(dct: DctEmbedder):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (90, 160, 3), dtype=np.uint8) for _ in range(3)]
    n_windows = len(frame_windows(dct.window_scales, dct.window_grid))

    images = dct.embed_images(frames)
    windows = dct.embed_frames(frames)

    assert dct.dim == 63
    assert images.shape == (3, 63) and images.dtype == np.float32
    assert windows.shape == (3, n_windows, 63) and windows.dtype == np.float32
    assert np.linalg.norm(images, axis=-1) == pytest.approx(np.ones(3), abs=1e-5)
    assert np.linalg.norm(windows, axis=-1) == pytest.approx(np.ones((3, n_windows)), abs=1e-5)
    assert np.array_equal(images, DctEmbedder().embed_images(frames))
    assert np.array_equal(windows, DctEmbedder().embed_frames(frames))
    # the whole-frame window is the image embedding of the frame
    assert np.allclose(windows[:, 0], images, atol=1e-6)
    assert dct.embed_images([]).shape == (0, 63)
    assert dct.embed_frames([]).shape == (0, n_windows, 63)


def test_dct_accepts_pil_and_grey(dct: DctEmbedder):
    photo = _photo("chelsea")
    from_array = dct.embed_images([np.asarray(photo)])
    from_pil = dct.embed_images([photo])
    from_grey = dct.embed_images([photo.convert("L")])
    from_rgba = dct.embed_images([photo.convert("RGBA")])

    assert np.array_equal(from_array, from_pil)
    assert np.allclose(from_grey, from_array, atol=1e-6)
    assert np.allclose(from_rgba, from_array, atol=1e-6)


def test_dct_name_tracks_parameters():
    assert DctEmbedder().name == DctEmbedder().name
    assert DctEmbedder(freqs=6).name != DctEmbedder().name
    assert DctEmbedder(weight_power=1.0).name != DctEmbedder().name


@pytest.mark.parametrize(("name", "position", "scale", "colour", "flipped"), CAPTIONS)
def test_caption_image_matches_its_photo(
    dct: DctEmbedder,
    photo_windows: dict[str, np.ndarray],
    name: str,
    position: tuple[float, float],
    scale: float,
    colour: str,
    flipped: bool,
):
    caption = _caption_image(_photo(name), position, scale, colour, flipped)
    entry = _index_entry(dct, caption, flipped)

    scores = {other: float((windows @ entry).max()) for other, windows in photo_windows.items()}

    assert scores[name] >= dct.default_threshold, scores
    for other in PHOTOS:
        if other != name:
            assert scores[other] < dct.default_threshold, (other, scores)
    assert scores[name] - max(s for o, s in scores.items() if o != name) > 0.25, scores


def test_flipped_caption_needs_the_mirrored_entry(
    dct: DctEmbedder, photo_windows: dict[str, np.ndarray]
):
    for name, position, scale, colour, flipped in CAPTIONS:
        if not flipped:
            continue
        caption = _caption_image(_photo(name), position, scale, colour, True)
        direct = float((photo_windows[name] @ dct.embed_images([caption])[0]).max())
        mirrored = float((photo_windows[name] @ _index_entry(dct, caption, True)).max())
        assert direct < dct.default_threshold <= mirrored, (name, direct, mirrored)


def test_different_photos_stay_below_threshold(
    dct: DctEmbedder, photo_windows: dict[str, np.ndarray]
):
    for name in PHOTOS:
        for flipped in (False, True):
            caption = _caption_image(_photo(name), (0.5, 0.5), 1.0, "none", False, area=0.8)
            entry = _index_entry(dct, caption, flipped)
            for other in PHOTOS:
                if other != name:
                    score = float((photo_windows[other] @ entry).max())
                    assert score < dct.default_threshold, (name, other, flipped, score)


def test_centred_crop_matches_its_photo(dct: DctEmbedder, photo_windows: dict[str, np.ndarray]):
    scores = {}
    for name in PHOTOS:
        caption = _caption_image(_photo(name), (0.5, 0.5), 1.0, "none", False)
        scores[name] = float((photo_windows[name] @ dct.embed_images([caption])[0]).max())
    assert min(scores.values()) >= dct.default_threshold, scores


def test_l2_normalize_handles_zero_rows():
    x = np.array([[3.0, 4.0], [0.0, 0.0]])
    out = l2_normalize(x)
    assert out.dtype == np.float32
    assert out.tolist() == [[pytest.approx(0.6), pytest.approx(0.8)], [0.0, 0.0]]


# open_clip: a tiny ViT registered from a temporary config, random or locally saved weights

TINY_MODEL = "vcc-test-tiny-vit"
TINY_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> str:
    open_clip = pytest.importorskip("open_clip")
    path = tmp_path_factory.mktemp("open_clip") / f"{TINY_MODEL}.json"
    path.write_text(json.dumps(TINY_CONFIG))
    open_clip.add_model_config(path)
    assert TINY_MODEL in open_clip.list_models()
    return TINY_MODEL


@pytest.fixture(scope="module")
def clip_frames() -> list[np.ndarray]:
    return [np.asarray(_photo(name).resize((160, 90))) for name in ("astronaut", "coffee")]


def test_open_clip_random_weights_shapes_and_norms(tiny_clip: str, clip_frames: list[np.ndarray]):
    import torch

    torch.manual_seed(0)
    embedder = OpenClipEmbedder(tiny_clip, batch_size=3)

    images = embedder.embed_images(clip_frames + [Image.fromarray(clip_frames[0]).convert("L")])
    windows = embedder.embed_frames(clip_frames)

    assert embedder.dim == 32
    assert embedder.name == f"open_clip-{tiny_clip}-random"
    assert images.shape == (3, 32) and images.dtype == np.float32
    assert windows.shape == (2, 5, 32)  # scales (1.0, 0.8) on a 2x2 grid: 1 + 4 windows
    assert np.linalg.norm(images, axis=-1) == pytest.approx(np.ones(3), abs=1e-5)
    assert np.linalg.norm(windows, axis=-1) == pytest.approx(np.ones((2, 5)), abs=1e-5)
    # the whole-frame window is the image embedding of the frame
    assert np.allclose(windows[:, 0], images[:2], atol=1e-5)
    assert not np.allclose(windows[:, 1], windows[:, 0], atol=1e-3)
    assert embedder.embed_images([]).shape == (0, 32)
    assert embedder.embed_frames([]).shape == (0, 5, 32)


def test_open_clip_local_weights_file(
    tiny_clip: str, clip_frames: list[np.ndarray], tmp_path: Path
):
    import torch

    torch.manual_seed(1)
    saved = OpenClipEmbedder(tiny_clip)
    weights = tmp_path / "tiny.pt"
    torch.save(saved.model.state_dict(), weights)

    loaded = OpenClipEmbedder(tiny_clip, pretrained=str(weights))
    torch.manual_seed(2)
    other = OpenClipEmbedder(tiny_clip)

    expected = saved.embed_frames(clip_frames)
    assert np.array_equal(loaded.embed_frames(clip_frames), expected)
    assert np.array_equal(loaded.embed_images(clip_frames), saved.embed_images(clip_frames))
    assert not np.allclose(other.embed_frames(clip_frames), expected, atol=1e-3)
    assert loaded.name == f"open_clip-{tiny_clip}-{weights}"
