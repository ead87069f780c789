"""Embed: DctEmbedder throughput on caption images and on frames (with all their windows).

Single process, single thread (PIL, NumPy argsort and scipy's DCT as the embedder calls them).
Images are the demo corpus's caption JPEGs, decoded as the pipeline decodes them and cycled up
to a batch of the size the image-embedding actor gets; frames are keyframes of one corpus video
at the pipeline's default frame height (180 px), one chunk at a time as the match actor gets them.
"""

from __future__ import annotations

import statistics
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from common import Interleaved, corpus, corpus_videos, rate

from mining.embed import DctEmbedder, frame_windows
from mining.images import decode_image
from mining.keyframes import decode_frames

REPEATS = 3
IMAGE_BATCH = 256  # what EmbedImages gets per call (mine.embed_images: batch_size=256)
FRAME_CHUNK = 64  # DecodeConfig.chunk_frames


def _caption_images(count: int) -> list[np.ndarray]:
    table = pq.read_table(corpus()[0], columns=["jpg"])
    decoded = [decode_image(data) for data in table["jpg"].to_pylist()]
    return [decoded[i % len(decoded)] for i in range(count)]


def _frames(count: int) -> list[np.ndarray]:
    frames: list[np.ndarray] = []
    for path in corpus_videos()[::-1]:  # the last video has the shortest GOP: most keyframes
        for chunk in decode_frames(str(path), mode="keyframes", frame_height=180):
            frames.extend(chunk.frames)
            if len(frames) >= count:
                return frames[:count]
    return frames


def run(repeats: int = REPEATS) -> dict[str, Any]:
    embedder = DctEmbedder()
    images = _caption_images(2 * IMAGE_BATCH)
    frames = _frames(2 * FRAME_CHUNK)
    windows = len(frame_windows(embedder.window_scales, embedder.window_grid))

    def embed_images() -> np.ndarray:
        return np.concatenate(
            [
                embedder.embed_images(images[i : i + IMAGE_BATCH])
                for i in range(0, len(images), IMAGE_BATCH)
            ]
        )

    def embed_frames() -> np.ndarray:
        return np.concatenate(
            [
                embedder.embed_frames(frames[i : i + FRAME_CHUNK])
                for i in range(0, len(frames), FRAME_CHUNK)
            ]
        )

    variants = {"embed_images": embed_images, "embed_frames": embed_frames}
    runs = Interleaved().run(variants, repeats, warmup=True)
    img_s, frm_s = runs.wall("embed_images"), runs.wall("embed_frames")
    sizes = [im.shape[1] * im.shape[0] for im in images]
    return {
        "embedder": embedder.name,
        "dim": embedder.dim,
        "images": len(images),
        "image_pixels_median": int(statistics.median(sizes)),
        "image_size_range": [
            f"{images[int(np.argmin(sizes))].shape[1]}x{images[int(np.argmin(sizes))].shape[0]}",
            f"{images[int(np.argmax(sizes))].shape[1]}x{images[int(np.argmax(sizes))].shape[0]}",
        ],
        "frames": len(frames),
        "frame_size": f"{frames[0].shape[1]}x{frames[0].shape[0]}",
        "windows_per_frame": windows,
        "embed_images": {**runs.summary("embed_images"), "images_per_s": rate(len(images), img_s)},
        "embed_frames": {
            **runs.summary("embed_frames"),
            "frames_per_s": rate(len(frames), frm_s),
            "windows_per_s": rate(len(frames) * windows, frm_s),
        },
        "output_shape_frames": list(runs.result("embed_frames").shape),
        "contention": runs.contention(),
    }
