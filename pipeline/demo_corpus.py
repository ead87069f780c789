"""A synthetic but hard demo corpus for the mining pipeline, and the scorer for its results.

This module owns the demo corpus end to end: which offline photos it uses and how they are split
into content items, how videos are rendered (Ken Burns shots with hard cuts, varied GOP layouts),
how caption images are derived from video frames, the layout of ``truth.json`` and the metrics
(precision, recall, purity) that compare mined clips against that truth.

Layout written by :func:`generate_corpus`::

    out_dir/videos/vid000.mp4 ...   H.264 videos, one per encoding in the spec
    out_dir/images.parquet          key, caption, jpg (the img2dataset layout)
    out_dir/truth.json              shots, image sources and content roles
"""

from __future__ import annotations

import argparse
import bisect
import dataclasses
import io
import json
import logging
import subprocess
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageEnhance, ImageOps

from mining.media import ffmpeg_binary

logger = logging.getLogger(__name__)

Window = tuple[float, float, float, float]  # left, top, right, bottom in photo pixels
Region = tuple[float, float, float, float]  # left, top, right, bottom as fractions of the photo

TRUTH_FILE = "truth.json"
IMAGES_FILE = "images.parquet"
VIDEOS_DIR = "videos"
FRAME_ASPECT = 16 / 9


@dataclass(frozen=True)
class Encoding:
    """How one video is encoded: frame rate, GOP length and whether x264 may cut GOPs at scenes."""

    fps: int
    keyint: int
    scenecut: bool


@dataclass(frozen=True)
class CorpusSpec:
    """Everything that determines a demo corpus; the same spec always gives the same corpus."""

    seed: int = 0
    """Seed of every random choice."""
    n_videos: int = 6
    """Number of videos; video ``i`` uses ``encodings[i % len(encodings)]``."""
    width: int = 480
    """Frame width in pixels (even)."""
    height: int = 270
    """Frame height in pixels (even)."""
    video_seconds: float = 40.0
    """Length of every video; the last shot is truncated to it."""
    shot_seconds: tuple[float, float] = (3.0, 8.0)
    """Shot durations are drawn uniformly from this range."""
    window_width_fraction: tuple[float, float] = (0.55, 0.95)
    """Width of the Ken Burns windows as a fraction of the photo width."""
    captions_per_positive_shot: float = 0.6
    """Fraction of all shots, chosen at random and rounded, that get one caption image."""
    n_negatives: int = 8
    """Caption images of content that no video shows."""
    crop_area: tuple[float, float] = (0.6, 0.95)
    """Area of a caption image's crop as a fraction of the frame."""
    aspect_jitter: float = 0.15
    """Relative change of the crop's aspect ratio against the frame's, at most."""
    rescale: tuple[float, float] = (0.6, 1.6)
    """Factor applied to the crop's size."""
    jpeg_quality: tuple[int, int] = (35, 90)
    """JPEG quality of caption images, uniform and inclusive."""
    encodings: tuple[Encoding, ...] = (
        Encoding(25, 25, True),
        Encoding(25, 50, False),
        Encoding(30, 150, True),
        Encoding(25, 250, True),
        Encoding(24, 48, False),
        Encoding(25, 12, True),
    )
    """Per-video encodings, cycled through."""
    audio_videos: tuple[int, ...] = (1,)
    """Indices of videos that get a 440 Hz AAC sine track."""
    faststart_videos: tuple[int, ...] = (0, 2, 4)
    """Indices of videos written with ``-movflags +faststart``."""

    def __post_init__(self) -> None:
        if self.width % 2 or self.height % 2:
            raise ValueError("width and height must be even for yuv420p")
        if self.n_videos < 1 or not self.encodings:
            raise ValueError("need at least one video and one encoding")
        if not 0 < self.shot_seconds[0] <= self.shot_seconds[1]:
            raise ValueError(f"bad shot_seconds {self.shot_seconds}")
        if not 0.0 <= self.captions_per_positive_shot <= 1.0:
            raise ValueError("captions_per_positive_shot must lie in [0, 1]")

    @classmethod
    def small(cls, seed: int = 0) -> CorpusSpec:
        """A corpus for tests: two short small videos (one fixed-GOP, with audio), 4 negatives.

        Shots are shorter than the default so that 15 s videos still hold several cuts.
        """
        return cls(
            seed=seed,
            n_videos=2,
            width=320,
            height=180,
            video_seconds=15.0,
            shot_seconds=(2.0, 5.0),
            n_negatives=4,
        )

    def encoding_of(self, video_index: int) -> Encoding:
        """The encoding of video ``video_index``."""
        return self.encodings[video_index % len(self.encodings)]


@dataclass(frozen=True)
class ContentItem:
    """One piece of visual content: a region of an offline photo and ways to caption it."""

    name: str
    source: str  # function name in skimage.data
    captions: tuple[str, ...]
    region: Region = (0.0, 0.0, 1.0, 1.0)
    negative: bool = False  # reserved for negative caption images; never shown in a video


CONTENT_ITEMS: tuple[ContentItem, ...] = (
    ContentItem(
        "astronaut",
        "astronaut",
        (
            "an astronaut in a spacesuit in front of a flag",
            "portrait of a smiling astronaut in a white flight suit",
            "a nasa astronaut posing next to the american flag",
            "official portrait of a woman astronaut with a space shuttle model",
        ),
    ),
    ContentItem(
        "camera",
        "camera",
        (
            "a black and white photo of a man with a camera on a tripod",
            "a cameraman standing in a field behind an old camera",
            "monochrome picture of a photographer at work outdoors",
            "a man in a dark coat looking through a tripod camera",
        ),
    ),
    ContentItem(
        "chelsea",
        "chelsea",
        (
            "an orange tabby cat looking to the side",
            "close-up of a ginger cat's face and whiskers",
            "a cute striped cat resting indoors",
            "portrait of a tabby cat with green eyes",
        ),
    ),
    ContentItem(
        "clock",
        "clock",
        (
            "a grayscale photo of a wall clock",
            "close-up of an analog clock face with hands",
            "an old clock, black and white photograph",
            "a round clock showing the time",
        ),
    ),
    ContentItem(
        "coffee",
        "coffee",
        (
            "a cup of coffee on a saucer",
            "a cappuccino in a white cup with a spoon",
            "coffee with milk foam served on a table",
            "top view of a hot drink in a cup",
        ),
    ),
    ContentItem(
        "hubble_left",
        "hubble_deep_field",
        (
            "deep space galaxies seen by the hubble telescope",
            "the hubble deep field full of distant galaxies",
            "many tiny galaxies scattered across dark space",
            "astronomy photo of faint galaxies in the early universe",
        ),
        region=(0.0, 0.0, 0.5, 1.0),
    ),
    ContentItem(
        "immunohistochemistry",
        "immunohistochemistry",
        (
            "microscope image of stained tissue",
            "an immunohistochemistry slide with brown and blue cells",
            "a histology sample under the microscope",
            "stained cell nuclei in a tissue section",
        ),
    ),
    ContentItem(
        "moon",
        "moon",
        (
            "the surface of the moon in black and white",
            "craters on the lunar surface",
            "a grayscale photo of moon craters",
            "close-up of the rough surface of the moon",
        ),
    ),
    ContentItem(
        "page",
        "page",
        (
            "a scanned page of printed text",
            "a photo of a book page with uneven lighting",
            "a page of text in grayscale",
            "a document scan with lines of printed words",
        ),
    ),
    ContentItem(
        "retina_tl",
        "retina",
        (
            "a fundus photograph of a human retina",
            "retina with branching blood vessels, medical image",
            "the back of the eye showing red blood vessels",
            "an ophthalmology image of the retina",
        ),
        region=(0.0, 0.0, 0.5, 0.5),
    ),
    ContentItem(
        "retina_br",
        "retina",
        (
            "an eye fundus image with blood vessels",
            "close-up of the retina from an eye exam",
            "orange retinal tissue crossed by dark vessels",
            "medical photograph of the inside of an eye",
        ),
        region=(0.5, 0.5, 1.0, 1.0),
    ),
    ContentItem(
        "rocket",
        "rocket",
        (
            "a rocket on the launch pad",
            "a space launch vehicle ready for liftoff",
            "a tall white rocket standing on its pad under a blue sky",
            "a rocket and launch tower before a launch",
        ),
    ),
    ContentItem(
        "text",
        "text",
        (
            "a grayscale photo of writing on a sign",
            "handwritten text seen at an angle",
            "letters written on a board, black and white",
            "close-up of some text on a surface",
        ),
    ),
    ContentItem(
        "colorwheel",
        "colorwheel",
        (
            "a color wheel with the full hue spectrum",
            "a rainbow colour wheel on a plain background",
            "an rgb color circle chart",
            "a round chart of hues and saturation",
        ),
    ),
    ContentItem(
        "logo",
        "logo",
        (
            "the scikit-image logo",
            "a software project logo with a snake",
            "a colourful logo on a white background",
            "the scikit image emblem",
        ),
    ),
    ContentItem(
        "horse",
        "horse",
        (
            "a black silhouette of a horse",
            "horse silhouette on a white background",
            "a binary image of a horse shape",
            "the outline of a standing horse",
        ),
    ),
    ContentItem(
        "brick",
        "brick",
        (
            "a brick wall texture",
            "close-up of a gray brick wall",
            "grayscale pattern of bricks and mortar",
            "a masonry wall surface",
        ),
        negative=True,
    ),
    ContentItem(
        "grass",
        "grass",
        (
            "a texture of grass",
            "close-up of grass blades in black and white",
            "a lawn seen from above",
            "dense grass background",
        ),
        negative=True,
    ),
    ContentItem(
        "gravel",
        "gravel",
        (
            "gravel texture",
            "small stones on the ground",
            "grayscale close-up of pebbles",
            "a path covered in gravel",
        ),
        negative=True,
    ),
    ContentItem(
        "coins",
        "coins",
        (
            "old coins on a dark background",
            "a grid of ancient coins in black and white",
            "a collection of greek coins",
            "numismatic photo of many coins",
        ),
        negative=True,
    ),
    ContentItem(
        "hubble_right",
        "hubble_deep_field",
        (
            "hubble telescope view of distant galaxies",
            "a deep field image of the universe",
            "galaxies of many shapes in deep space",
            "a space telescope photo with hundreds of galaxies",
        ),
        region=(0.5, 0.0, 1.0, 1.0),
        negative=True,
    ),
)


def content_items() -> dict[str, ContentItem]:
    """All content items by name, shown candidates and negatives alike."""
    return {item.name: item for item in CONTENT_ITEMS}


def load_photo(item: ContentItem) -> Image.Image:
    """The RGB photo of a content item: its region of the skimage.data image."""
    import skimage.data

    array = np.asarray(getattr(skimage.data, item.source)())
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    array = np.ascontiguousarray(array[:, :, :3].astype(np.uint8))
    height, width = array.shape[:2]
    left, top, right, bottom = item.region
    rows = slice(round(top * height), round(bottom * height))
    columns = slice(round(left * width), round(right * width))
    crop = array[rows, columns]
    return Image.fromarray(np.ascontiguousarray(crop), "RGB")


@dataclass
class _Shot:
    content: str
    first_frame: int
    n_frames: int
    window_a: Window
    window_b: Window


@dataclass
class _Video:
    video_id: str
    encoding: Encoding
    n_frames: int
    shots: list[_Shot] = field(default_factory=list)
    audio: bool = False
    faststart: bool = False


class _Deck:
    """Draws names in shuffled rounds so every name is used evenly, never twice in a row."""

    def __init__(self, names: Sequence[str], rng: np.random.Generator) -> None:
        self._names = list(names)
        self._rng = rng
        self._pending: list[str] = []
        self._last: str | None = None

    def draw(self) -> str:
        if not self._pending:
            self._pending = [self._names[i] for i in self._rng.permutation(len(self._names))]
            if len(self._pending) > 1 and self._pending[-1] == self._last:
                self._pending[0], self._pending[-1] = self._pending[-1], self._pending[0]
        self._last = self._pending.pop()
        return self._last


def _random_window(
    photo: Image.Image, fraction: tuple[float, float], rng: np.random.Generator
) -> Window:
    photo_w, photo_h = photo.size
    width = rng.uniform(*fraction) * photo_w
    width = min(width, photo_h * FRAME_ASPECT)
    height = width / FRAME_ASPECT
    left = rng.uniform(0.0, photo_w - width)
    top = rng.uniform(0.0, photo_h - height)
    return (left, top, left + width, top + height)


def _interpolate(a: Window, b: Window, u: float) -> Window:
    return (
        a[0] + (b[0] - a[0]) * u,
        a[1] + (b[1] - a[1]) * u,
        a[2] + (b[2] - a[2]) * u,
        a[3] + (b[3] - a[3]) * u,
    )


def _render(photo: Image.Image, window: Window, size: tuple[int, int]) -> Image.Image:
    return photo.resize(size, Image.Resampling.BILINEAR, box=window)


def _render_shot_frame(
    shot: _Shot, frame_index: int, photos: dict[str, Image.Image], size: tuple[int, int]
) -> Image.Image:
    offset = frame_index - shot.first_frame
    u = offset / (shot.n_frames - 1) if shot.n_frames > 1 else 0.0
    return _render(photos[shot.content], _interpolate(shot.window_a, shot.window_b, u), size)


def _plan_videos(
    spec: CorpusSpec, shown: Sequence[str], photos: dict[str, Image.Image], rng: np.random.Generator
) -> list[_Video]:
    deck = _Deck(shown, rng)
    videos = []
    for index in range(spec.n_videos):
        encoding = spec.encoding_of(index)
        total = max(1, round(spec.video_seconds * encoding.fps))
        video = _Video(
            f"vid{index:03d}",
            encoding,
            total,
            audio=index in spec.audio_videos,
            faststart=index in spec.faststart_videos,
        )
        first = 0
        while first < total:
            length = max(1, round(rng.uniform(*spec.shot_seconds) * encoding.fps))
            length = min(length, total - first)
            content = deck.draw()
            photo = photos[content]
            window_a = _random_window(photo, spec.window_width_fraction, rng)
            window_b = _random_window(photo, spec.window_width_fraction, rng)
            video.shots.append(_Shot(content, first, length, window_a, window_b))
            first += length
        videos.append(video)
    return videos


def keyint_min(encoding: Encoding) -> int:
    """x264's minimum GOP length for an encoding.

    A fixed GOP uses the full length. With scene cuts it is 1: x264 clamps a larger minimum to
    keyint/2+1 and marks cuts closer than that to the last IDR as non-IDR I-frames, which
    containers do not flag as keyframes, so most cuts would get no keyframe at long GOPs.
    """
    return 1 if encoding.scenecut else encoding.keyint


def _ffmpeg_command(video: _Video, size: tuple[int, int], path: Path) -> list[str]:
    enc = video.encoding
    command = [
        ffmpeg_binary(),
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-s",
        f"{size[0]}x{size[1]}",
        "-r",
        str(enc.fps),
        "-i",
        "-",
    ]
    if video.audio:
        command += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]
    command += [
        "-map",
        "0:v",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-pix_fmt",
        "yuv420p",
        "-g",
        str(enc.keyint),
        "-keyint_min",
        str(keyint_min(enc)),
    ]
    if not enc.scenecut:
        command += ["-sc_threshold", "0", "-x264-params", "scenecut=0"]
    if video.audio:
        command += ["-map", "1:a", "-c:a", "aac", "-b:a", "64k", "-shortest"]
    if video.faststart:
        command += ["-movflags", "+faststart"]
    command += ["-fflags", "+bitexact", "-map_metadata", "-1", str(path)]
    return command


def _encode_video(
    video: _Video, photos: dict[str, Image.Image], size: tuple[int, int], path: Path
) -> None:
    command = _ffmpeg_command(video, size, path)
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=errors)
        assert process.stdin is not None
        try:
            for shot in video.shots:
                for frame_index in range(shot.first_frame, shot.first_frame + shot.n_frames):
                    frame = _render_shot_frame(shot, frame_index, photos, size)
                    process.stdin.write(frame.tobytes())
        except BrokenPipeError:
            pass
        finally:
            process.stdin.close()
            code = process.wait()
        if code != 0:
            errors.seek(0)
            message = errors.read().decode(errors="replace").strip()
            raise RuntimeError(f"ffmpeg failed on {path.name} (exit {code}): {message}")


def _augment(
    frame: Image.Image, spec: CorpusSpec, rng: np.random.Generator
) -> tuple[bytes, dict[str, Any]]:
    """Crop, rescale, recolour, maybe flip and JPEG-encode one frame as a caption image."""
    frame_w, frame_h = frame.size
    area = rng.uniform(*spec.crop_area) * frame_w * frame_h
    aspect = frame_w / frame_h * rng.uniform(1 - spec.aspect_jitter, 1 + spec.aspect_jitter)
    crop_w = min(frame_w, max(8, round(np.sqrt(area * aspect))))
    crop_h = min(frame_h, max(8, round(np.sqrt(area / aspect))))
    left = int(rng.integers(0, frame_w - crop_w + 1))
    top = int(rng.integers(0, frame_h - crop_h + 1))
    image = frame.crop((left, top, left + crop_w, top + crop_h))

    scale = float(rng.uniform(*spec.rescale))
    new_size = (max(16, round(crop_w * scale)), max(16, round(crop_h * scale)))
    image = image.resize(new_size, Image.Resampling.BICUBIC)

    colour = str(rng.choice(["hue", "saturation", "brightness_contrast", "gamma", "grayscale"]))
    params: dict[str, float] = {}
    if colour == "hue":
        shift = int(rng.integers(24, 232))
        hue, sat, val = image.convert("HSV").split()
        hue = hue.point(lambda h: (h + shift) % 256)
        image = Image.merge("HSV", (hue, sat, val)).convert("RGB")
        params["shift_deg"] = round(shift * 360 / 256, 1)
    elif colour == "saturation":
        factor = float(rng.uniform(0.3, 1.6))
        image = ImageEnhance.Color(image).enhance(factor)
        params["factor"] = round(factor, 3)
    elif colour == "brightness_contrast":
        brightness, contrast = (float(x) for x in rng.uniform(0.6, 1.4, size=2))
        image = ImageEnhance.Contrast(ImageEnhance.Brightness(image).enhance(brightness))
        image = image.enhance(contrast)
        params.update(brightness=round(brightness, 3), contrast=round(contrast, 3))
    elif colour == "gamma":
        gamma = float(rng.uniform(0.6, 1.6))
        table = [min(255, round(255 * (i / 255) ** gamma)) for i in range(256)]
        image = image.point(table * 3)
        params["gamma"] = round(gamma, 3)
    else:
        image = image.convert("L")  # stays single-channel: a grayscale JPEG, as on the web

    flip = bool(rng.random() < 0.5)
    if flip:
        image = ImageOps.mirror(image)
    quality = int(rng.integers(spec.jpeg_quality[0], spec.jpeg_quality[1] + 1))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    augment = {
        "crop": [left, top, left + crop_w, top + crop_h],
        "scale": round(scale, 3),
        "size": list(image.size),
        "colour": colour,
        **params,
        "flip": flip,
        "quality": quality,
    }
    return buffer.getvalue(), augment


class _CaptionPicker:
    """Hands out each item's caption wordings in a seeded order, repeating only when exhausted."""

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng
        self._used: dict[str, int] = {}
        self._orders: dict[str, list[int]] = {}

    def pick(self, item: ContentItem) -> str:
        if item.name not in self._orders:
            self._orders[item.name] = [int(i) for i in self._rng.permutation(len(item.captions))]
        count = self._used.get(item.name, 0)
        self._used[item.name] = count + 1
        order = self._orders[item.name]
        return item.captions[order[count % len(order)]]


def _make_images(
    spec: CorpusSpec,
    videos: list[_Video],
    items: dict[str, ContentItem],
    negatives: Sequence[str],
    photos: dict[str, Image.Image],
    rng: np.random.Generator,
) -> list[dict[str, Any]]:
    size = (spec.width, spec.height)
    captions = _CaptionPicker(rng)
    images: list[dict[str, Any]] = []
    all_shots = [(video, index) for video in videos for index in range(len(video.shots))]
    n_positive = round(spec.captions_per_positive_shot * len(all_shots))
    chosen = set(rng.choice(len(all_shots), size=n_positive, replace=False).tolist())
    for number, (video, shot_index) in enumerate(all_shots):
        if number not in chosen:
            continue
        shot = video.shots[shot_index]
        fps = video.encoding.fps
        low = int(np.floor(0.1 * shot.n_frames))
        high = max(low + 1, int(np.ceil(0.9 * shot.n_frames)))
        frame_index = shot.first_frame + int(rng.integers(low, high))
        frame = _render_shot_frame(shot, frame_index, photos, size)
        jpg, augment = _augment(frame, spec, rng)
        images.append(
            {
                "content": shot.content,
                "negative": False,
                "caption": captions.pick(items[shot.content]),
                "jpg": jpg,
                "source": {
                    "video_id": video.video_id,
                    "shot": shot_index,
                    "frame": frame_index,
                    "t_s": frame_index / fps,
                },
                "augment": augment,
            }
        )
    deck = _Deck(negatives, rng)
    for _ in range(spec.n_negatives):
        content = deck.draw()
        window = _random_window(photos[content], spec.window_width_fraction, rng)
        jpg, augment = _augment(_render(photos[content], window, size), spec, rng)
        images.append(
            {
                "content": content,
                "negative": True,
                "caption": captions.pick(items[content]),
                "jpg": jpg,
                "source": None,
                "augment": augment,
            }
        )
    order = rng.permutation(len(images))
    shuffled = [images[i] for i in order]
    for number, image in enumerate(shuffled):
        image["key"] = f"img{number:05d}"
    return shuffled


def _write_images(images: list[dict[str, Any]], path: Path) -> None:
    table = pa.table(
        {
            "key": pa.array([image["key"] for image in images], pa.string()),
            "caption": pa.array([image["caption"] for image in images], pa.string()),
            "jpg": pa.array([image["jpg"] for image in images], pa.binary()),
        }
    )
    pq.write_table(table, path, compression="zstd")


def _truth_document(
    spec: CorpusSpec,
    videos: list[_Video],
    images: list[dict[str, Any]],
    items: dict[str, ContentItem],
) -> dict[str, Any]:
    shown = {shot.content for video in videos for shot in video.shots}
    video_entries = []
    for video in videos:
        fps = video.encoding.fps
        video_entries.append(
            {
                "video_id": video.video_id,
                "file": f"{VIDEOS_DIR}/{video.video_id}.mp4",
                "fps": fps,
                "keyint": video.encoding.keyint,
                "scenecut": video.encoding.scenecut,
                "keyint_min": keyint_min(video.encoding),
                "audio": video.audio,
                "faststart": video.faststart,
                "width": spec.width,
                "height": spec.height,
                "n_frames": video.n_frames,
                "duration_s": video.n_frames / fps,
                "shots": [
                    {
                        "start_s": shot.first_frame / fps,
                        "end_s": (shot.first_frame + shot.n_frames) / fps,
                        "content": shot.content,
                        "first_frame": shot.first_frame,
                        "n_frames": shot.n_frames,
                    }
                    for shot in video.shots
                ],
            }
        )
    image_entries = [
        {
            "key": image["key"],
            "content": image["content"],
            "negative": image["negative"],
            "caption": image["caption"],
            "source": image["source"],
            "augment": image["augment"],
        }
        for image in images
    ]
    contents = {
        name: {"shown": name in shown, "negative": item.negative, "source": item.source}
        for name, item in items.items()
    }
    return {
        "spec": dataclasses.asdict(spec),
        "videos": video_entries,
        "images": image_entries,
        "contents": contents,
    }


def generate_corpus(out_dir: str | Path, spec: CorpusSpec = CorpusSpec()) -> Path:
    """Write the corpus of ``spec`` (videos, images.parquet, truth.json) under ``out_dir``."""
    started = time.perf_counter()
    out = Path(out_dir)
    (out / VIDEOS_DIR).mkdir(parents=True, exist_ok=True)
    items = content_items()
    shown = [name for name, item in items.items() if not item.negative]
    negatives = [name for name, item in items.items() if item.negative]
    photos = {name: load_photo(item) for name, item in items.items()}

    seeds = np.random.SeedSequence(spec.seed).spawn(2)
    videos = _plan_videos(spec, shown, photos, np.random.default_rng(seeds[0]))
    size = (spec.width, spec.height)
    for video in videos:
        _encode_video(video, photos, size, out / VIDEOS_DIR / f"{video.video_id}.mp4")
        logger.debug(
            "encoded %s: %d frames, %d shots", video.video_id, video.n_frames, len(video.shots)
        )

    images = _make_images(spec, videos, items, negatives, photos, np.random.default_rng(seeds[1]))
    _write_images(images, out / IMAGES_FILE)
    truth = _truth_document(spec, videos, images, items)
    (out / TRUTH_FILE).write_text(json.dumps(truth, indent=1) + "\n")
    logger.info(
        "demo corpus in %s: %d videos, %d images (%d negative) in %.1f s",
        out,
        len(videos),
        len(images),
        spec.n_negatives,
        time.perf_counter() - started,
    )
    return out


def load_truth(path: str | Path) -> dict[str, Any]:
    """Read a corpus's truth; ``path`` is truth.json itself or the corpus directory."""
    path = Path(path)
    if path.is_dir():
        path = path / TRUTH_FILE
    return json.loads(path.read_text())


def _clip_rows(clips: pa.Table | Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    needed = ("video_id", "start_s", "end_s", "image_key")
    if isinstance(clips, pa.Table):
        missing = [name for name in needed if name not in clips.column_names]
        if missing:
            raise ValueError(f"clips lack columns {missing}")
        return clips.select(list(needed)).to_pylist()
    rows = list(clips)
    for row in rows:
        missing = [name for name in needed if name not in row]
        if missing:
            raise ValueError(f"clip {row!r} lacks {missing}")
    return rows


class _ShotIndex:
    """Finds the shot of a video that contains a time."""

    def __init__(self, shots: list[dict[str, Any]]) -> None:
        self.shots = shots
        self._starts = [shot["start_s"] for shot in shots]

    def find(self, t: float) -> int | None:
        index = bisect.bisect_right(self._starts, t) - 1
        if index < 0:
            return None
        end = self.shots[index]["end_s"]
        if t < end or (index == len(self.shots) - 1 and t <= end):
            return index
        return None


def score_clips(
    clips: pa.Table | list[dict[str, Any]], truth: dict[str, Any] | str | Path
) -> dict[str, Any]:
    """Score mined clips (video_id, start_s, end_s, image_key) against a corpus's truth.

    A clip is right when its midpoint lies in a shot that shows its caption image's content;
    recall counts positive images with a clip whose midpoint lies in the image's source shot;
    purity is the mean fraction of each clip spent inside the right shot around its midpoint.
    """
    if not isinstance(truth, dict):
        truth = load_truth(truth)
    shot_index = {video["video_id"]: _ShotIndex(video["shots"]) for video in truth["videos"]}
    images = {image["key"]: image for image in truth["images"]}
    rows = _clip_rows(clips)

    right = 0
    purity_sum = 0.0
    negative_clips = 0
    unknown_images = 0
    unknown_videos = 0
    recalled: set[str] = set()
    for row in rows:
        image = images.get(row["image_key"])
        index = shot_index.get(row["video_id"])
        if image is None:
            unknown_images += 1
            continue
        if image["negative"]:
            negative_clips += 1
        if index is None:
            unknown_videos += 1
            continue
        start, end = float(row["start_s"]), float(row["end_s"])
        shot_number = index.find((start + end) / 2)
        if shot_number is None:
            continue
        shot = index.shots[shot_number]
        if shot["content"] != image["content"]:
            continue
        right += 1
        if end > start:
            overlap = min(end, shot["end_s"]) - max(start, shot["start_s"])
            purity_sum += max(0.0, overlap) / (end - start)
        source = image["source"]
        if source and source["video_id"] == row["video_id"] and source["shot"] == shot_number:
            recalled.add(image["key"])

    positives = [key for key, image in images.items() if not image["negative"]]
    n_clips = len(rows)
    result: dict[str, Any] = {
        "precision": right / n_clips if n_clips else 0.0,
        "recall": len(recalled) / len(positives) if positives else 0.0,
        "purity": purity_sum / n_clips if n_clips else 0.0,
        "clips": n_clips,
        "positives": len(positives),
        "negatives": len(images) - len(positives),
        "negative_clips": negative_clips,
        "wrong_clips": n_clips - right,
        "missed": [key for key in positives if key not in recalled],
    }
    if unknown_images or unknown_videos:
        result["unknown_images"] = unknown_images
        result["unknown_videos"] = unknown_videos
    if not n_clips:
        result["note"] = "no clips: precision and purity are reported as 0.0"
    return result


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``python -m pipeline.demo_corpus OUT_DIR [--small] [--seed N]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--small", action="store_true", help="the small test preset")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    spec = CorpusSpec.small(args.seed) if args.small else CorpusSpec(seed=args.seed)
    generate_corpus(args.out_dir, spec)


if __name__ == "__main__":
    main()
