"""How much a restyle moved the look toward a painting: texture (Gram matrices) and palette (hue-saturation).

A colour transfer moves the palette but not the texture; a neural restyle must move both.
Texture: a fixed bank of random 7x7 filters (zero mean per channel, so flat colour gives no
response), ReLU, the Gram matrix of the responses at 256 px; distance between Gram matrices.
"""
from __future__ import annotations

import cv2
import numpy as np

FILTERS = 32
SIDE = 256


def _bank() -> np.ndarray:
    bank = np.random.default_rng(7).standard_normal((FILTERS, 3, 7, 7)).astype(np.float32)
    bank -= bank.mean(axis=(2, 3), keepdims=True)  # zero mean per channel: colour alone gives nothing
    return bank / np.sqrt((bank ** 2).sum(axis=(1, 2, 3), keepdims=True))


_BANK = _bank()


def gram(rgb: np.ndarray) -> np.ndarray:
    """[FILTERS, FILTERS] Gram matrix of ReLU(random 7x7 filters) at 256 px on the longer side."""
    scale = SIDE / max(rgb.shape[:2])
    image = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    channels = cv2.split(image)
    responses = []
    for kernel in _BANK:
        response = sum(cv2.filter2D(c, -1, k, borderType=cv2.BORDER_REFLECT) for c, k in zip(channels, kernel))
        responses.append(np.maximum(response, 0).ravel())
    features = np.stack(responses)
    return features @ features.T / features.shape[1]


def texture_distance(rgb: np.ndarray, painting: np.ndarray) -> float:
    return float(np.linalg.norm(gram(rgb) - gram(painting)))


def hs_histogram(rgb: np.ndarray) -> np.ndarray:
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1], None, [30, 32], [0, 180, 0, 256])
    return cv2.normalize(hist, None, 1.0, 0.0, cv2.NORM_L1)


def palette_distance(rgb: np.ndarray, painting: np.ndarray) -> float:
    """Bhattacharyya distance between hue-saturation histograms (0 same palette, 1 disjoint)."""
    return float(cv2.compareHist(hs_histogram(rgb), hs_histogram(painting), cv2.HISTCMP_BHATTACHARYYA))


def look_moved(frames: np.ndarray, sources: np.ndarray, painting: np.ndarray) -> tuple[float, float]:
    """(texture, palette) distance to the painting of the restyled frames relative to the sources' (< 1: moved toward it)."""
    texture = np.mean([texture_distance(f, painting) for f in frames]) / np.mean([texture_distance(s, painting) for s in sources])
    palette = np.mean([palette_distance(f, painting) for f in frames]) / np.mean([palette_distance(s, painting) for s in sources])
    return float(texture), float(palette)
