"""The FAISS index over caption-image embeddings, and searching frame windows against it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from mining import atomic

log = logging.getLogger(__name__)

EXACT_BELOW = 100_000


def factory_string(kind: str, n_vectors: int) -> str:
    """Resolve the configured index type into a FAISS index_factory string."""
    if kind == "auto":
        if n_vectors < EXACT_BELOW:
            return "Flat"
        lists = int(4 * np.sqrt(n_vectors))
        return f"IVF{lists},Flat"
    return kind


@dataclass
class ImageIndex:
    """A FAISS inner-product index whose rows map to image positions (`row_image`)."""

    index: faiss.Index
    row_image: np.ndarray  # [rows] int64: which image each index row holds (mirrors share it)

    @classmethod
    def build(
        cls,
        embeddings: np.ndarray,
        mirrored: np.ndarray | None = None,
        kind: str = "auto",
        nprobe: int = 16,
    ) -> ImageIndex:
        """Index [N, D] unit-norm embeddings, and their mirrors' when given."""
        vectors = embeddings if mirrored is None else np.concatenate([embeddings, mirrored])
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        row_image = np.arange(len(embeddings), dtype=np.int64)
        if mirrored is not None:
            row_image = np.concatenate([row_image, row_image])
        factory = factory_string(kind, len(embeddings))  # by images, mirrors not counted
        try:
            index = faiss.index_factory(vectors.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as err:
            raise ValueError(
                f"index.type {kind!r} is not a FAISS index_factory string: {err}"
            ) from err
        if not index.is_trained:
            index.train(vectors)
        index.add(vectors)
        if hasattr(index, "nprobe"):
            index.nprobe = nprobe
        log.info(
            "built %s index over %d vectors of dim %d", factory, index.ntotal, vectors.shape[1]
        )
        return cls(index, row_image)

    def save(self, folder: str | Path) -> None:
        """Write index.faiss and row_image.npy atomically into folder."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic.atomic_path(folder / "row_image.npy") as tmp, open(tmp, "wb") as fh:
            np.save(fh, self.row_image)
        with atomic.atomic_path(folder / "index.faiss") as tmp:
            faiss.write_index(self.index, str(tmp))

    @classmethod
    def load(cls, folder: str | Path, nprobe: int = 16) -> ImageIndex:
        folder = Path(folder)
        index = faiss.read_index(str(folder / "index.faiss"))
        if hasattr(index, "nprobe"):
            index.nprobe = nprobe
        return cls(index, np.load(folder / "row_image.npy"))

    def search_frames(
        self, frame_embs: np.ndarray, threshold: float, top_k: int = 8
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Match frames against images; a frame's score for an image is its best window's.

        Args:
            frame_embs: [F, V, D] unit-norm embeddings of V windows of F frames.
        Returns:
            (frame, image, score) arrays, one entry per frame-image pair at or above threshold.
        """
        n_frames, n_windows, dim = frame_embs.shape
        if n_frames == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
        queries = np.ascontiguousarray(frame_embs.reshape(-1, dim), dtype=np.float32)
        k = min(top_k, self.index.ntotal)
        scores, rows = self.index.search(queries, k)
        frame = np.repeat(np.arange(n_frames), n_windows * k)
        image = self.row_image[np.maximum(rows, 0)].ravel()
        score = scores.ravel()
        keep = (rows.ravel() >= 0) & (score >= threshold)
        frame, image, score = frame[keep], image[keep], score[keep]
        if len(frame) == 0:
            return frame, image, score.astype(np.float32)

        # best score per (frame, image) pair
        order = np.lexsort((-score, image, frame))
        frame, image, score = frame[order], image[order], score[order]
        first = np.ones(len(frame), dtype=bool)
        first[1:] = (frame[1:] != frame[:-1]) | (image[1:] != image[:-1])
        return frame[first], image[first], score[first].astype(np.float32)


def write_meta(folder: str | Path, meta: dict) -> None:
    atomic.write_json(Path(folder) / "meta.json", meta)
