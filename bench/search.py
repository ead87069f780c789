"""Search: `ImageIndex.search_frames` against a brute-force NumPy matrix product.

Images are random unit vectors of the DCT embedder's dimension (63). Queries are one chunk of
frames (64) with every window (as many as DctEmbedder cuts from a frame) a random unit vector,
except that every second frame has one window planted near a random image (cosine about
0.58-0.96), so that some pairs clear the threshold. The baseline computes what search_frames
computes, without FAISS: all window-image cosines with one matrix product, the best window per
(frame, image), then the threshold.

The exact index (Flat) must give the same pairs as the baseline; the index `auto` picks for
100k vectors (IVF, approximate) is measured too, with its recall of the exact pairs. The index
here holds no mirrored images; with `index.add_flipped` (the default) an index of N images
holds 2N vectors, so the 100k row applies to 50k images.
"""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np
from common import Interleaved, rate, timed

from mining.embed import DctEmbedder, frame_windows, l2_normalize
from mining.index import ImageIndex, factory_string

REPEATS = 3
SIZES = (10_000, 100_000)
FRAMES = 64
TOP_K = 8
BLOCK_FRAMES = 8  # frames per matrix product in the baseline: 8*101 x 100k floats = 323 MB


def _data(n_images: int, dim: int, windows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = l2_normalize(rng.standard_normal((n_images, dim), dtype=np.float32))
    windows_FVD = l2_normalize(rng.standard_normal((FRAMES, windows, dim), dtype=np.float32))
    for f in range(0, FRAMES, 2):
        target = images[rng.integers(n_images)]
        noise = l2_normalize(rng.standard_normal(dim, dtype=np.float32))
        mix = rng.uniform(0.3, 1.4)
        windows_FVD[f, rng.integers(windows)] = l2_normalize(target + mix * noise)
    return images, windows_FVD


def brute_force(
    images_ND: np.ndarray, windows_FVD: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frame, image, score) for every pair whose best window reaches threshold, in that order."""
    n_frames, n_windows, dim = windows_FVD.shape
    frames, images, scores = [], [], []
    for start in range(0, n_frames, BLOCK_FRAMES):
        block = windows_FVD[start : start + BLOCK_FRAMES]
        sims = (block.reshape(-1, dim) @ images_ND.T).reshape(len(block), n_windows, -1)
        best_BN = sims.max(axis=1)
        f, i = np.nonzero(best_BN >= threshold)
        frames.append(f + start)
        images.append(i)
        scores.append(best_BN[f, i])
    return np.concatenate(frames), np.concatenate(images), np.concatenate(scores)


def _pairs(result: tuple[np.ndarray, np.ndarray, np.ndarray]) -> dict[tuple[int, int], float]:
    frame, image, score = result
    return {(int(f), int(i)): float(s) for f, i, s in zip(frame, image, score)}


def _compare(exact: dict, other: dict) -> dict[str, Any]:
    common_pairs = exact.keys() & other.keys()
    diff = max((abs(exact[p] - other[p]) for p in common_pairs), default=0.0)
    return {
        "pairs": len(other),
        "missing": len(exact.keys() - other.keys()),
        "extra": len(other.keys() - exact.keys()),
        "max_score_diff": float(diff),
        "recall": round(len(common_pairs) / len(exact), 4) if exact else 1.0,
    }


def _measure(
    n_images: int, repeats: int, threshold: float, dim: int, windows: int
) -> dict[str, Any]:
    images, windows_FVD = _data(n_images, dim, windows, seed=n_images)
    flat_build = timed(lambda: ImageIndex.build(images, kind="Flat"))
    flat = flat_build.result
    variants = {
        "faiss_flat": lambda: flat.search_frames(windows_FVD, threshold, TOP_K),
        "numpy": lambda: brute_force(images, windows_FVD, threshold),
    }
    auto_kind = factory_string("auto", n_images)
    auto_build = None
    if auto_kind != "Flat":
        auto_build = timed(lambda: ImageIndex.build(images, kind="auto"))
        auto = auto_build.result
        variants["faiss_auto"] = lambda: auto.search_frames(windows_FVD, threshold, TOP_K)
    runs = Interleaved().run(variants, repeats, warmup=True)

    queries = FRAMES * windows
    exact = _pairs(runs.result("numpy"))
    out: dict[str, Any] = {
        "images": n_images,
        "dim": dim,
        "frames": FRAMES,
        "windows": windows,
        "queries": queries,
        "threshold": threshold,
        "top_k": TOP_K,
        "exact_pairs": len(exact),
    }
    for name in variants:
        wall = runs.wall(name)
        out[name] = {
            **runs.summary(name),
            "queries_per_s": rate(queries, wall),
            "frames_per_s": rate(FRAMES, wall),
        }
    out["faiss_flat"]["build_s"] = round(flat_build.wall_s, 3)
    out["faiss_flat"]["vs_numpy"] = _compare(exact, _pairs(runs.result("faiss_flat")))
    out["same_pairs_flat_vs_numpy"] = (
        out["faiss_flat"]["vs_numpy"]["missing"] == 0
        and out["faiss_flat"]["vs_numpy"]["extra"] == 0
    )
    # > 1: FAISS answers faster than the NumPy matrix product
    out["ratio_flat_vs_numpy"] = round(runs.wall("numpy") / runs.wall("faiss_flat"), 3)
    if auto_build is not None:
        out["faiss_auto"]["factory"] = auto_kind
        out["faiss_auto"]["nprobe"] = int(auto_build.result.index.nprobe)
        out["faiss_auto"]["build_s"] = round(auto_build.wall_s, 3)
        out["faiss_auto"]["vs_numpy"] = _compare(exact, _pairs(runs.result("faiss_auto")))
        out["ratio_auto_vs_numpy"] = round(runs.wall("numpy") / runs.wall("faiss_auto"), 3)
    out["contention"] = runs.contention()
    return out


def run(repeats: int = REPEATS, sizes: tuple[int, ...] = SIZES) -> dict[str, Any]:
    embedder = DctEmbedder()
    windows = len(frame_windows(embedder.window_scales, embedder.window_grid))
    return {
        "faiss_threads": faiss.omp_get_max_threads(),
        "sizes": {
            str(n): _measure(n, repeats, embedder.default_threshold, embedder.dim, windows)
            for n in sizes
        },
    }
