"""Training input: shards -> Ray Data -> decoded frame stacks and tokenised captions.

The split is by video: a video's clips are all in train or all in eval. Frames come from the
shard's `frames` column (JPEGs); a row without frames is decoded from its `clip` bytes.
"""

from __future__ import annotations

import hashlib
import io
import logging

import av
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from PIL import Image

from mining.shards import shard_paths

log = logging.getLogger(__name__)

COLUMNS = ["clip_id", "video_id", "caption", "frames", "clip"]


def split_videos(video_ids: list[str], eval_fraction: float, seed: int = 0) -> set[str]:
    """The held-out videos: a fixed fraction chosen by hash, at least one when there are two."""
    videos = sorted(set(video_ids))
    if len(videos) < 2 or eval_fraction <= 0:
        return set()
    n_eval = min(len(videos) - 1, max(1, round(eval_fraction * len(videos))))
    ranked = sorted(videos, key=lambda v: hashlib.sha1(f"{seed}:{v}".encode()).hexdigest())
    return set(ranked[:n_eval])


def _pick(n: int, count: int) -> np.ndarray:
    """`count` indices spread evenly over n items (repeating when n < count)."""
    return np.floor((np.arange(count) + 0.5) * n / count).astype(int)


def _decode_clip(data: bytes, count: int) -> list[Image.Image]:
    with av.open(io.BytesIO(data)) as container:
        frames = list(container.decode(container.streams.video[0]))
        if not frames:
            raise ValueError("clip has no frames")
        return [frames[i].to_image() for i in _pick(len(frames), count)]  # convert only these


def frames_of(row_frames: list[bytes] | None, clip: bytes | None, count: int) -> list[Image.Image]:
    """T RGB frames of a clip: from its JPEG frames, else decoded from its bytes."""
    if row_frames:
        picked = _pick(len(row_frames), count)
        return [Image.open(io.BytesIO(row_frames[i])).convert("RGB") for i in picked]
    if not clip:
        raise ValueError("row has neither frames nor clip bytes")
    return _decode_clip(clip, count)


class Preprocess:
    """Ray Data batch fn: rows -> `video` [B, T, C, H, W] float32 and `text` [B, L] int64."""

    def __init__(self, model_name: str, frames: int, image_size: int, mean, std) -> None:
        self.model_name = model_name
        self.frames = frames
        self.size = image_size
        self.mean = np.asarray(mean, np.float32).reshape(1, 3, 1, 1)
        self.std = np.asarray(std, np.float32).reshape(1, 3, 1, 1)
        self._tokenizer = None

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from training.model import get_tokenizer

            self._tokenizer = get_tokenizer(self.model_name)
        return self._tokenizer

    def _to_tensor(self, images: list[Image.Image]) -> np.ndarray:
        out = []
        for image in images:
            # resize the short side, centre-crop: the image tower's own preprocessing
            scale = self.size / min(image.size)
            w, h = (
                max(self.size, round(image.width * scale)),
                max(self.size, round(image.height * scale)),
            )
            image = image.resize((w, h), Image.Resampling.BICUBIC)
            left, top = (w - self.size) // 2, (h - self.size) // 2
            image = image.crop((left, top, left + self.size, top + self.size))
            out.append(np.asarray(image, np.float32).transpose(2, 0, 1) / 255.0)
        return (np.stack(out) - self.mean) / self.std

    def __call__(self, batch: pa.Table) -> dict[str, np.ndarray]:
        frames = (
            batch["frames"].to_pylist() if "frames" in batch.column_names else [None] * len(batch)
        )
        clips = batch["clip"].to_pylist() if "clip" in batch.column_names else [None] * len(batch)
        videos = [self._to_tensor(frames_of(f, c, self.frames)) for f, c in zip(frames, clips)]
        text = self.tokenizer(batch["caption"].to_pylist()).numpy().astype(np.int64)
        return {
            "video": np.stack(videos).astype(np.float32),
            "text": text,
            "clip_id": np.array(batch["clip_id"].to_pylist(), dtype=object),
        }


def read_split(shards: str, eval_fraction: float, seed: int = 0):
    """Ray Datasets of train and eval rows (not yet preprocessed), split by video."""
    import ray

    files = shard_paths(shards)
    if not files:
        raise FileNotFoundError(
            f"no shards under {shards}: run `vcc mine` first, or point at a shards folder"
        )
    ds = ray.data.read_parquet(files).select_columns(COLUMNS)
    video_ids = (
        pa.concat_tables([pq.read_table(f, columns=["video_id"]) for f in files])["video_id"]
        .unique()
        .to_pylist()
    )
    held_out = split_videos(video_ids, eval_fraction, seed)
    held = pa.array(sorted(held_out), pa.string())

    def is_eval(batch: pa.Table) -> pa.Table:
        return batch.filter(pc.is_in(batch["video_id"], value_set=held))

    def is_train(batch: pa.Table) -> pa.Table:
        return batch.filter(pc.invert(pc.is_in(batch["video_id"], value_set=held)))

    train = ds.map_batches(is_train, batch_format="pyarrow")
    evaluation = ds.map_batches(is_eval, batch_format="pyarrow")
    return train, evaluation, sorted(held_out), sorted(set(video_ids) - held_out)
