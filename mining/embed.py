"""Image and frame embedders behind one interface.

Two embedders exist:

* `DctEmbedder` (the embedded default) needs no weights: the low spatial frequencies of a
  rank-normalised grey thumbnail, weighted to flatten the natural-image spectrum. Ranks make it
  blind to tone and colour changes, the thumbnail to rescaling and JPEG. It is not crop-invariant
  by itself; crops are found by embedding several windows of every frame (`frame_windows`).
* `OpenClipEmbedder`: any open_clip model, weights from a pretrained tag or a local file.

Horizontal flips are handled by the index, which holds every image and its mirror.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy.fft import dctn

log = logging.getLogger(__name__)

Box = tuple[float, float, float, float]  # left, top, right, bottom as fractions of the frame


def frame_windows(scales: Sequence[float], grid: int) -> list[Box]:
    """Windows of a frame in which a cropped caption image may be found.

    For each scale s (side of the window as a fraction of the frame's side) the windows sit on a
    `grid` x `grid` lattice of positions; scale 1.0 gives the whole frame once.
    """
    boxes: list[Box] = []
    for scale in scales:
        if not 0.0 < scale <= 1.0:
            raise ValueError(f"window scale must be in (0, 1], got {scale}")
        steps = [0.0] if scale >= 0.999 or grid <= 1 else list(np.linspace(0.0, 1.0 - scale, grid))
        for top in steps:
            for left in steps:
                boxes.append((left, top, left + scale, top + scale))
    return boxes


def l2_normalize(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


def _pixel_box(box: Box, width: int, height: int) -> tuple[float, float, float, float]:
    left, top, right, bottom = box
    return (left * width, top * height, right * width, bottom * height)


@dataclass(frozen=True)
class DctEmbedder:
    """The weight-free default embedder."""

    thumb: int = 32
    freqs: int = 8
    window_scales: tuple[float, ...] = (1.0, 0.9, 0.8, 0.7, 0.62)
    window_grid: int = 5  # odd, so that one window of each scale is centred
    weight_power: float = 1.5
    default_threshold: float = 0.7

    @property
    def name(self) -> str:
        return f"dct-v1-t{self.thumb}-f{self.freqs}-w{self.weight_power:g}"

    @property
    def dim(self) -> int:
        return self.freqs * self.freqs - 1

    def _weights(self) -> np.ndarray:
        u, v = np.meshgrid(np.arange(self.freqs), np.arange(self.freqs), indexing="ij")
        return np.power(u * u + v * v, self.weight_power / 2).ravel()[1:]

    def _embed_thumbs(self, thumbs: np.ndarray) -> np.ndarray:
        """thumbs: [N, thumb, thumb] uint8 grey -> [N, dim] float32, unit norm."""
        n = thumbs.shape[0]
        flat = thumbs.reshape(n, -1)
        ranks = np.argsort(np.argsort(flat, axis=1, kind="stable"), axis=1).astype(np.float32)
        ranks = ranks / (flat.shape[1] - 1) - 0.5
        coeffs = dctn(ranks.reshape(n, self.thumb, self.thumb), axes=(1, 2), norm="ortho")
        low = coeffs[:, : self.freqs, : self.freqs].reshape(n, -1)[:, 1:]
        return l2_normalize(low * self._weights())

    def _thumb(self, image: Image.Image, box: Box | None = None) -> np.ndarray:
        grey = image if image.mode == "L" else image.convert("L")
        pixel_box = None if box is None else _pixel_box(box, grey.width, grey.height)
        size = (self.thumb, self.thumb)
        return np.asarray(grey.resize(size, Image.Resampling.BILINEAR, box=pixel_box))

    def embed_images(self, images: Sequence[np.ndarray | Image.Image]) -> np.ndarray:
        """[N] RGB images -> [N, dim]."""
        if not images:
            return np.zeros((0, self.dim), np.float32)
        thumbs = np.stack([self._thumb(_as_pil(img)) for img in images])
        return self._embed_thumbs(thumbs)

    def embed_frames(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """[F] RGB frames -> [F, V, dim], one embedding per window of `frame_windows`."""
        boxes = frame_windows(self.window_scales, self.window_grid)
        if len(frames) == 0:
            return np.zeros((0, len(boxes), self.dim), np.float32)
        thumbs = np.stack(
            [
                self._thumb(grey, box)
                for grey in (_as_pil(f).convert("L") for f in frames)
                for box in boxes
            ]
        )
        return self._embed_thumbs(thumbs).reshape(len(frames), len(boxes), self.dim)


def _as_pil(image: np.ndarray | Image.Image) -> Image.Image:
    if isinstance(image, Image.Image):
        return image if image.mode in ("RGB", "L") else image.convert("RGB")
    return Image.fromarray(np.ascontiguousarray(image))


class OpenClipEmbedder:
    """An open_clip image tower; weights from a pretrained tag (needs a network) or a local file."""

    default_threshold = 0.85

    def __init__(
        self,
        model: str,
        pretrained: str | None = None,
        device: str = "cpu",
        batch_size: int = 64,
        window_scales: tuple[float, ...] = (1.0, 0.8),
        window_grid: int = 2,
    ) -> None:
        import open_clip
        import torch

        self._torch = torch
        self.model_name = model
        self.pretrained = pretrained
        self.device = device
        self.batch_size = batch_size
        self.window_scales = window_scales
        self.window_grid = window_grid
        self.model, _, self.preprocess = open_clip.create_model_and_transforms(
            model, pretrained=pretrained, device=device
        )
        self.model.eval()
        self.dim = int(self.model.visual.output_dim)

    @staticmethod
    def id_for(model: str, pretrained: str | None) -> str:
        """The embedder's id in run.json, known without loading the model."""
        return f"open_clip-{model}-{pretrained or 'random'}"

    @property
    def name(self) -> str:
        return self.id_for(self.model_name, self.pretrained)

    def _encode(self, images: list[Image.Image]) -> np.ndarray:
        torch = self._torch
        out = []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                batch = torch.stack(
                    [self.preprocess(im) for im in images[start : start + self.batch_size]]
                )
                feats = self.model.encode_image(batch.to(self.device))
                out.append(feats.float().cpu().numpy())
        return l2_normalize(np.concatenate(out)) if out else np.zeros((0, self.dim), np.float32)

    def embed_images(self, images: Sequence[np.ndarray | Image.Image]) -> np.ndarray:
        return self._encode([_as_pil(im).convert("RGB") for im in images])

    def embed_frames(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        boxes = frame_windows(self.window_scales, self.window_grid)
        crops = []
        for frame in frames:
            pil = _as_pil(frame).convert("RGB")
            crops.extend(
                pil.crop(tuple(map(round, _pixel_box(b, pil.width, pil.height)))) for b in boxes
            )
        return self._encode(crops).reshape(len(frames), len(boxes), self.dim)
