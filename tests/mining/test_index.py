"""mining.index: the FAISS index over image embeddings and searching frame windows against it."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pytest

from mining.embed import l2_normalize
from mining.index import EXACT_BELOW, ImageIndex, factory_string, write_meta

DIM = 16


def _unit(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return l2_normalize(rng.normal(size=(*shape, DIM)))


def _brute_force(
    images: np.ndarray, frames: np.ndarray, threshold: float, mirrored: np.ndarray | None = None
) -> dict[tuple[int, int], float]:
    """(frame, image) -> best score over windows (and mirrors), for pairs at or above threshold."""
    scores = np.einsum("fvd,nd->fvn", frames, images).max(axis=1)
    if mirrored is not None:
        scores = np.maximum(scores, np.einsum("fvd,nd->fvn", frames, mirrored).max(axis=1))
    return {
        (f, n): float(scores[f, n])
        for f in range(scores.shape[0])
        for n in range(scores.shape[1])
        if scores[f, n] >= threshold
    }


def _as_dict(result: tuple[np.ndarray, np.ndarray, np.ndarray]) -> dict[tuple[int, int], float]:
    frame, image, score = result
    assert len(frame) == len(image) == len(score)
    pairs = {(int(f), int(i)): float(s) for f, i, s in zip(frame, image, score)}
    assert len(pairs) == len(frame), "one entry per frame-image pair"
    return pairs


def _threshold_away_from(scores: np.ndarray, near: float) -> float:
    """A threshold near `near` that no score lies within 1e-4 of (float32 vs float64 ties)."""
    for threshold in np.linspace(near, near + 0.05, 51):
        if np.abs(scores - threshold).min() > 1e-4:
            return float(threshold)
    raise AssertionError("no clean threshold")


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    images = _unit(rng, 40)
    # frames: noisy copies of some images in some windows, random elsewhere
    frames = _unit(rng, 12, 5)
    for f in range(0, 12, 2):
        frames[f, f % 5] = l2_normalize(images[f] + 0.05 * rng.normal(size=DIM))
    return images, frames


def test_flat_search_equals_brute_force(data):
    images, frames = data
    all_scores = np.einsum("fvd,nd->fvn", frames, images).max(axis=1)
    threshold = _threshold_away_from(all_scores, 0.3)

    index = ImageIndex.build(images, kind="Flat")
    found = _as_dict(index.search_frames(frames, threshold, top_k=len(images)))
    expected = _brute_force(images, frames, threshold)

    assert isinstance(index.index, faiss.IndexFlat)
    assert index.index.ntotal == len(images)
    assert found.keys() == expected.keys()
    assert len(found) > 12  # the threshold lets through more than the planted copies
    for pair, score in expected.items():
        assert found[pair] == pytest.approx(score, abs=1e-5)


def test_search_output_is_sorted_and_typed(data):
    images, frames = data
    frame, image, score = ImageIndex.build(images).search_frames(frames, 0.2, top_k=8)

    assert frame.dtype == np.int64 and image.dtype == np.int64 and score.dtype == np.float32
    assert list(zip(frame.tolist(), image.tolist())) == sorted(zip(frame.tolist(), image.tolist()))
    assert np.all(score >= 0.2)


def test_planted_copies_are_found_at_a_high_threshold(data):
    images, frames = data
    frame, image, score = ImageIndex.build(images).search_frames(frames, 0.9, top_k=4)

    assert set(zip(frame.tolist(), image.tolist())) == {(f, f) for f in range(0, 12, 2)}
    assert np.all(score >= 0.9)


def test_nothing_above_threshold_and_no_frames(data):
    images, frames = data
    index = ImageIndex.build(images)

    frame, image, score = index.search_frames(frames, 1.01)
    assert len(frame) == len(image) == len(score) == 0

    frame, image, score = index.search_frames(np.zeros((0, 5, DIM), np.float32), 0.0)
    assert len(frame) == len(image) == len(score) == 0
    assert score.dtype == np.float32


def test_mirrors_map_to_the_same_image(data):
    images, frames = data
    rng = np.random.default_rng(3)
    mirrored = _unit(rng, len(images))
    queries = _unit(rng, 3, 4)
    queries[0, 2] = mirrored[5]
    queries[1, 0] = images[9]
    queries[2, 3] = mirrored[9]

    index = ImageIndex.build(images, mirrored=mirrored, kind="Flat")
    found = _as_dict(index.search_frames(queries, 0.999, top_k=4))

    assert index.index.ntotal == 2 * len(images)
    assert index.row_image.tolist() == list(range(len(images))) * 2
    assert found == {
        (0, 5): pytest.approx(1.0),
        (1, 9): pytest.approx(1.0),
        (2, 9): pytest.approx(1.0),
    }


def test_mirrored_search_equals_brute_force(data):
    images, frames = data
    mirrored = images[:, ::-1].copy()  # any second view of each image
    all_scores = np.maximum(
        np.einsum("fvd,nd->fvn", frames, images).max(axis=1),
        np.einsum("fvd,nd->fvn", frames, mirrored).max(axis=1),
    )
    threshold = _threshold_away_from(all_scores, 0.35)

    index = ImageIndex.build(images, mirrored=mirrored)
    found = _as_dict(index.search_frames(frames, threshold, top_k=2 * len(images)))
    expected = _brute_force(images, frames, threshold, mirrored)

    assert found.keys() == expected.keys()
    for pair, score in expected.items():
        assert found[pair] == pytest.approx(score, abs=1e-5)


def test_save_load_round_trip(data, tmp_path: Path):
    images, frames = data
    index = ImageIndex.build(images, mirrored=images[:, ::-1].copy())
    folder = tmp_path / "index"

    index.save(folder)
    loaded = ImageIndex.load(folder)

    assert sorted(p.name for p in folder.iterdir()) == ["index.faiss", "row_image.npy"]
    assert np.array_equal(loaded.row_image, index.row_image)
    assert loaded.index.ntotal == index.index.ntotal
    before = index.search_frames(frames, 0.2, top_k=10)
    after = loaded.search_frames(frames, 0.2, top_k=10)
    for a, b in zip(before, after):
        assert np.array_equal(a, b)


def test_save_overwrites(data, tmp_path: Path):
    images, _ = data
    ImageIndex.build(images[:5]).save(tmp_path)
    ImageIndex.build(images).save(tmp_path)

    loaded = ImageIndex.load(tmp_path)

    assert loaded.index.ntotal == len(images)
    assert len(loaded.row_image) == len(images)


def test_ivf_index(tmp_path: Path):
    rng = np.random.default_rng(11)
    images = _unit(rng, 400)
    frames = _unit(rng, 6, 3)
    frames[2, 1] = images[123]
    threshold = _threshold_away_from(np.einsum("fvd,nd->fvn", frames, images).max(axis=1), 0.45)

    index = ImageIndex.build(images, kind="IVF4,Flat", nprobe=16)

    assert isinstance(index.index, faiss.IndexIVFFlat)
    assert index.index.nlist == 4 and index.index.nprobe == 16
    assert index.index.is_trained and index.index.ntotal == 400
    # nprobe >= nlist visits every list: the search is exact
    found = _as_dict(index.search_frames(frames, threshold, top_k=400))
    assert found.keys() == _brute_force(images, frames, threshold).keys()
    assert found[(2, 123)] == pytest.approx(1.0, abs=1e-5)

    index.save(tmp_path)
    loaded = ImageIndex.load(tmp_path, nprobe=2)
    assert faiss.extract_index_ivf(loaded.index).nprobe == 2


@pytest.mark.parametrize("kind", ["Bogus12", "IVFx,Flat", ""])
def test_invalid_factory_string_raises(data, kind: str):
    images, _ = data
    with pytest.raises(ValueError, match="not a FAISS index_factory string"):
        ImageIndex.build(images, kind=kind)


def test_factory_string():
    assert factory_string("auto", 10) == "Flat"
    assert factory_string("auto", EXACT_BELOW - 1) == "Flat"
    assert factory_string("auto", EXACT_BELOW) == "IVF1264,Flat"
    assert factory_string("auto", 1_000_000) == "IVF4000,Flat"
    assert factory_string("HNSW32", 10) == "HNSW32"


def test_write_meta(tmp_path: Path):
    import json

    write_meta(tmp_path, {"embedder": "dct", "n": 3})

    assert json.loads((tmp_path / "meta.json").read_text()) == {"embedder": "dct", "n": 3}
    assert [p.name for p in tmp_path.iterdir()] == ["meta.json"]
