"""The Ray-facing units of work: what one decode task, embed actor or cut task does.

Each wraps `mining` functions, turns every per-item error into a recorded failure, and speaks
Arrow tables so that Ray Data can stream them. Nothing here decides placement; `mine.py` does.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import tempfile
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mining.cut import cut_clip
from mining.embed import DctEmbedder, OpenClipEmbedder
from mining.fetch import FetchError, fetch_section
from mining.images import decode_image
from mining.index import ImageIndex
from mining.keyframes import decode_frames, refine_cut
from mining.media import MediaError
from mining.select import bound_span, clip_id, needs_refinement
from mining.videos import is_url
from pipeline.config import EmbedConfig, MineConfig
from pipeline.fetching import fetch_options, gated

log = logging.getLogger(__name__)

# a section fetched for a span reaches this far past its clip, for the shot edges' exact cuts
SECTION_MARGIN_S = 1.0


def make_embedder(cfg: EmbedConfig):
    if cfg.kind == "dct":
        return DctEmbedder()
    return OpenClipEmbedder(cfg.model, cfg.pretrained, device=cfg.device, batch_size=cfg.batch_size)


def embedder_id(cfg: EmbedConfig) -> str:
    """What run.json and the index record as the embedder, without loading any weights."""
    if cfg.kind == "dct":
        return DctEmbedder().name
    return OpenClipEmbedder.id_for(cfg.model, cfg.pretrained)


def _reason(err: BaseException) -> str:
    if isinstance(err, (MediaError, ValueError, OSError)):
        return f"{type(err).__name__}: {err}"
    return f"{type(err).__name__}: {err} ({traceback.format_exc(limit=2).splitlines()[-1]})"


class EmbedImages:
    """Ray Data actor: image bytes -> embeddings (and mirrored ones); bad images become errors."""

    def __init__(self, cfg: MineConfig) -> None:
        self.embedder = make_embedder(cfg.embed)
        self.add_flipped = cfg.index.add_flipped

    def __call__(self, batch: pa.Table) -> pa.Table:
        keys = batch["key"].to_pylist()
        images, ok, errors = [], [], []
        for data in batch["jpg"].to_pylist():
            try:
                images.append(decode_image(data))
                ok.append(True)
                errors.append("")
            except ValueError as err:
                ok.append(False)
                errors.append(str(err))
        embs = self.embedder.embed_images(images)
        mirrored = (
            self.embedder.embed_images([im[:, ::-1] for im in images]) if self.add_flipped else embs
        )
        dim = embs.shape[1]
        out_emb = np.zeros((len(keys), dim), np.float32)
        out_mir = np.zeros((len(keys), dim), np.float32)
        out_emb[np.array(ok, bool)] = embs
        out_mir[np.array(ok, bool)] = mirrored
        return pa.table(
            {
                "key": keys,
                "caption": batch["caption"],
                "embedding": pa.FixedSizeListArray.from_arrays(out_emb.ravel(), dim),
                "mirrored": pa.FixedSizeListArray.from_arrays(out_mir.ravel(), dim),
                "error": errors,
            }
        )


def _chunk_row(video: dict, chunk: int, last: bool, **fields) -> pa.Table:
    row = {
        "video_id": video["video_id"],
        "path": video["path"],
        "chunk": chunk,
        "last": last,
        "times": [],
        "frames": b"",
        "frame_shape": [0, 0, 0, 0],
        "boundaries": [],
        "duration_s": 0.0,
        "fps": 0.0,
        "error": "",
        "decode_s": 0.0,
    }
    row.update(fields)
    return pa.Table.from_pylist([row])


def decode_videos(batch: pa.Table, cfg: MineConfig) -> Iterator[pa.Table]:
    """Ray Data task: one video row -> a stream of frame chunks; the last says how it ended."""
    from mining.media import probe

    d = cfg.decode
    for video in batch.to_pylist():
        chunk = 0
        started = time.perf_counter()
        try:
            info = probe(video["path"])
            for frames in decode_frames(
                video["path"], d.mode, d.fps, d.frame_height, d.chunk_frames, d.shot_threshold
            ):
                stack = (
                    np.stack(frames.frames) if frames.frames else np.zeros((0, 1, 1, 3), np.uint8)
                )
                yield _chunk_row(
                    video,
                    chunk,
                    False,
                    times=frames.times,
                    frames=stack.tobytes(),
                    frame_shape=list(stack.shape),
                    boundaries=[x for pair in frames.boundaries for x in pair],
                )
                chunk += 1
            yield _chunk_row(
                video,
                chunk,
                True,
                duration_s=info.duration_s,
                fps=info.fps,
                decode_s=time.perf_counter() - started,
            )
        except Exception as err:  # noqa: BLE001 - any failure of one video is recorded, not raised
            log.warning("video %s failed: %s", video["video_id"], err)
            yield _chunk_row(video, chunk, True, error=_reason(err))


class MatchFrames:
    """Ray Data actor: frame chunks -> matches (frame time, image key, score) against the index."""

    def __init__(self, cfg: MineConfig, index_dir: str, images_path: str) -> None:
        self.embedder = make_embedder(cfg.embed)
        self.index = ImageIndex.load(index_dir, nprobe=cfg.index.nprobe)
        self.keys = np.array(pq.read_table(images_path, columns=["key"])["key"].to_pylist(), object)
        self.top_k = cfg.index.top_k
        self.threshold = (
            cfg.match.threshold
            if cfg.match.threshold is not None
            else self.embedder.default_threshold
        )

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = []
        for row in batch.to_pylist():
            times = row.pop("times")
            shape = row.pop("frame_shape")
            data = row.pop("frames")
            hit_t, hit_key, hit_score = [], [], []
            if times:
                frames = np.frombuffer(data, np.uint8).reshape(shape)
                embs = self.embedder.embed_frames(list(frames))
                frame, image, score = self.index.search_frames(embs, self.threshold, self.top_k)
                hit_t = [times[i] for i in frame]
                hit_key = list(self.keys[image])
                hit_score = score.tolist()
            rows.append(
                {
                    **row,
                    "frames_seen": len(times),
                    "hit_t": hit_t,
                    "hit_key": hit_key,
                    "hit_score": hit_score,
                }
            )
        return pa.Table.from_pylist(rows)


@dataclass
class _Source:
    """Where one span is cut from: a local file, or a fetched section of a remote video.

    Times in the source video are `offset` plus times in `path`; the file covers the source's
    [offset, end] at least (a section) or all of it (a file).
    """

    path: str
    offset: float = 0.0
    end: float = float("inf")

    @property
    def section(self) -> bool:
        return self.offset > 0.0 or self.end != float("inf")

    def window(self, lo: float, hi: float) -> tuple[float, float] | None:
        """(lo, hi] in file time, cut down to what the file holds; None when nothing is left."""
        lo, hi = max(lo, self.offset), min(hi, self.end)
        return (lo - self.offset, hi - self.offset) if hi > lo else None


@contextlib.contextmanager
def _span_source(video: dict, window: tuple[float, float], cfg: MineConfig, gate):
    """The cached file when it exists, else a section of the video's URL fetched for window."""
    if video["path"] and os.path.exists(video["path"]):
        yield _Source(video["path"])
        return
    if not is_url(video["video_url"]):
        raise MediaError(f"{video['path']} no longer exists and the video has no URL to fetch")
    start, end = max(0.0, window[0]), window[1]
    opts = fetch_options(cfg.fetch)
    with tempfile.TemporaryDirectory(prefix="vcc-section-") as folder:
        url = video["video_url"]
        fetch = functools.partial(fetch_section, url, start, end, folder, opts)
        path = gated(gate, url, fetch) if gate is not None else fetch()
        yield _Source(path, start, end)


def _section_window(span: dict, clip_seconds: float) -> tuple[float, float]:
    """The part of the source that a span's cut can need: its clip and its shots' edges."""
    if span.get("exact"):
        return span["start_s"], span["end_s"]
    half = clip_seconds / 2
    return span["match_t_s"] - half - SECTION_MARGIN_S, span["match_t_s"] + half + SECTION_MARGIN_S


def _span_times(span: dict, source: _Source, cfg: MineConfig, refined: dict) -> tuple[float, float]:
    """The span's final [start, end] in the source: shot edges found exactly where they matter."""
    if span.get("exact"):
        return span["start_s"], span["end_s"]
    m, d = cfg.match, cfg.decode
    half = m.clip_seconds / 2

    def cut_time(lo: float, hi: float) -> float | None:
        window = source.window(lo, hi)
        if window is None:
            return None
        if (source.path, window) not in refined:
            found = refine_cut(source.path, *window, d.shot_threshold)
            refined[(source.path, window)] = None if found is None else found + source.offset
        return refined[(source.path, window)]

    start_lo, start_hi = span["shot_start_lo"], span["shot_start_hi"]
    end_lo, end_hi = span["shot_end_lo"], span["shot_end_hi"]
    shot_start, shot_end = start_hi, end_hi
    if span["match_t_s"] - half < start_hi and needs_refinement(
        start_lo, start_hi, span["video_fps"]
    ):
        found = cut_time(start_lo, start_hi)
        shot_start = found if found is not None else start_lo
    if span["match_t_s"] + half > end_lo and needs_refinement(end_lo, end_hi, span["video_fps"]):
        found = cut_time(end_lo, end_hi)
        shot_end = found if found is not None else end_hi
    start, end = bound_span(span, m.clip_seconds, shot_start, shot_end)
    if end - start < m.min_clip_seconds:
        raise ValueError(
            f"span {start:.2f}-{end:.2f}s is shorter than min_clip_seconds "
            "once its shot's exact cuts are known"
        )
    return start, end


def _best_first(span: dict) -> tuple:
    """Most similar first; spans with no score (VideoCC rows: NaN) in time order after them."""
    score = span["similarity"]
    return (-score if score == score else float("inf"), span["match_t_s"], span["image_key"])


def cut_video(
    video: dict, spans: list[dict], cfg: MineConfig, gate=None
) -> tuple[list[dict], list[dict]]:
    """Cut one video's spans: find exact cuts where needed, cut, verify, sample frames.

    A video whose file is gone (fetch.cache=delete) is cut from sections of its URL, fetched
    span by span (through `gate` when given). A span marked `exact` (a VideoCC row) is cut as
    given. Returns (rows, failures); rows follow the shard schema. Spans whose final (video,
    span, caption) repeats an earlier one's are recorded as duplicates, so ids stay unique.
    """
    c = cfg.cut
    rows, failures, seen = [], [], {}
    refined: dict = {}
    for span in sorted(spans, key=_best_first):
        what = {
            "video_id": video["video_id"],
            "image_key": span["image_key"],
            "match_t_s": span["match_t_s"],
        }
        try:
            with _span_source(
                video, _section_window(span, cfg.match.clip_seconds), cfg, gate
            ) as src:
                start, end = _span_times(span, src, cfg, refined)
                cid = clip_id(video["video_id"], start, end, span["caption"])
                if cid in seen:
                    raise ValueError(f"duplicate clip: same video, span and caption as {seen[cid]}")
                clip = cut_clip(
                    src.path,
                    start - src.offset,
                    end - src.offset,
                    c.mode,
                    c.max_height,
                    c.fps,
                    c.crf,
                    c.preset,
                    c.keep_audio,
                    c.frames,
                    c.frame_height,
                )
        except Exception as err:  # noqa: BLE001 - one bad span never stops the others
            reason = f"fetch {err.klass}: {err.message}" if isinstance(err, FetchError) else None
            failures.append({**what, "error": reason or _reason(err)})
            continue
        seen[cid] = span["image_key"]
        rows.append(
            {
                "clip_id": cid,
                "video_id": video["video_id"],
                "video_url": video["video_url"],
                "start_s": clip.start_s + src.offset,
                "end_s": clip.end_s + src.offset,
                "match_t_s": span["match_t_s"],
                "caption": span["caption"],
                "image_key": span["image_key"],
                "similarity": span["similarity"],
                "clip": clip.data,
                "frames": clip.frames,
                "width": clip.width,
                "height": clip.height,
                "fps": clip.fps,
                "duration_s": clip.duration_s,
                "cut_mode": c.mode,
                "from_section": src.section,
            }
        )
    return rows, failures
