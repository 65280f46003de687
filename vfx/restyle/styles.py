"""Named looks for the surroundings, each a function of one RGB frame (OpenCV, CPU)."""
from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from vfx.errors import VfxError

Style = Callable[[np.ndarray], np.ndarray]


def _half(rgb: np.ndarray) -> np.ndarray:
    return cv2.resize(rgb, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)


def _up(small: np.ndarray, like: np.ndarray) -> np.ndarray:
    return cv2.resize(small, (like.shape[1], like.shape[0]), interpolation=cv2.INTER_CUBIC)


def _saturate(rgb: np.ndarray, factor: float) -> np.ndarray:
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 1] = np.clip(hsv[..., 1] * factor, 0, 255)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)


def _curve_lut(points_r, points_g, points_b) -> np.ndarray:
    x = np.arange(256, dtype=np.float32)
    channels = [np.interp(x, *zip(*pts)) for pts in (points_r, points_g, points_b)]
    return np.clip(np.stack(channels, axis=-1), 0, 255).astype(np.uint8).reshape(256, 1, 3)


# Painterly looks run at half resolution: brush strokes carry no fine detail, and it is 4x cheaper.
def kuwahara(rgb: np.ndarray, radius: int) -> np.ndarray:
    """Kuwahara filter: each pixel takes the mean of its least-varied quadrant: flat strokes, kept edges.

    (xphoto's oilPainting was tried first; its histogram mode turns small highlights into
    white and black blobs.)
    """
    colour = rgb.astype(np.float32)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    size = (radius + 1, radius + 1)
    means, variances = [], []
    for anchor in ((radius, radius), (0, radius), (radius, 0), (0, 0)):
        box = dict(ksize=size, anchor=anchor, normalize=True, borderType=cv2.BORDER_REFLECT)
        mean = cv2.boxFilter(grey, -1, **box)
        variances.append(cv2.boxFilter(grey * grey, -1, **box) - mean * mean)
        means.append(cv2.boxFilter(colour, -1, **box))
    best = np.argmin(np.stack(variances), axis=0)[..., None]
    return np.clip(np.choose(best, means), 0, 255).astype(np.uint8)


def oil_paint(rgb: np.ndarray) -> np.ndarray:
    return _saturate(_up(kuwahara(_half(rgb), 5), rgb), 1.3)


def watercolour(rgb: np.ndarray) -> np.ndarray:
    washed = cv2.stylization(_half(rgb), sigma_s=30, sigma_r=0.45)
    paper = np.full_like(washed, (246, 240, 226))
    return _up(cv2.addWeighted(washed, 0.88, paper, 0.12, 0), rgb)


def cartoon(rgb: np.ndarray) -> np.ndarray:
    small = _half(rgb)
    smooth = cv2.bilateralFilter(small, 9, 60, 7)
    flat = (smooth // 40) * 40 + 20
    gray = cv2.medianBlur(cv2.cvtColor(smooth, cv2.COLOR_RGB2GRAY), 7)
    edges = cv2.adaptiveThreshold(gray, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY, 11, 6)
    return _up(cv2.bitwise_and(flat, flat, mask=edges), rgb)


_GOLDEN = _curve_lut([(0, 28), (128, 165), (255, 255)], [(0, 14), (128, 128), (255, 236)], [(0, 0), (128, 90), (255, 190)])
_NIGHT = _curve_lut([(0, 0), (128, 30), (255, 110)], [(0, 2), (128, 48), (255, 140)], [(0, 12), (128, 90), (255, 200)])


def golden_hour(rgb: np.ndarray) -> np.ndarray:
    warm = cv2.LUT(rgb, _GOLDEN)
    glow = cv2.GaussianBlur(warm, (0, 0), 9)
    return _saturate(cv2.addWeighted(warm, 0.8, glow, 0.2, 8), 1.15)


def night(rgb: np.ndarray) -> np.ndarray:
    dark = cv2.LUT(_saturate(rgb, 0.45), _NIGHT)
    return cv2.GaussianBlur(dark, (3, 3), 0)


STYLES: dict[str, Style] = {
    "oil": oil_paint,
    "watercolour": watercolour,
    "cartoon": cartoon,
    "golden_hour": golden_hour,
    "night": night,
}
STYLE_DESCRIPTIONS = {
    "oil": "painterly flat strokes (Kuwahara filter), richer colour",
    "watercolour": "soft edge-preserving wash on warm paper",
    "cartoon": "flat colour bands with inked edges",
    "golden_hour": "warm low-sun grade with a gentle glow",
    "night": "day-for-night: dark, desaturated, blue",
}


def style_named(name: str) -> Style:
    try:
        return STYLES[name]
    except KeyError:
        raise VfxError(f"unknown style {name!r}; choose one of: {', '.join(STYLES)} (or --style-image PATH)") from None


class ColourTransfer:
    """Reinhard colour transfer: match the frame's Lab mean and spread to a reference picture's."""

    def __init__(self, reference_rgb: np.ndarray):
        lab = cv2.cvtColor(reference_rgb, cv2.COLOR_RGB2Lab).reshape(-1, 3).astype(np.float32)
        self.mean = lab.mean(axis=0)
        self.std = lab.std(axis=0) + 1e-3

    def __call__(self, rgb: np.ndarray, source_mean: np.ndarray | None = None, source_std: np.ndarray | None = None) -> np.ndarray:
        lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab).astype(np.float32)
        if source_mean is None or source_std is None:
            source_mean, source_std = frame_lab_stats(rgb)
        # Gain is bounded: a near-black or flat frame must not have its noise stretched to full range.
        gain = np.clip(self.std / np.maximum(source_std, 4.0), 0.4, 2.5)
        lab = (lab - source_mean) * gain + self.mean
        return cv2.cvtColor(np.clip(lab, 0, 255).astype(np.uint8), cv2.COLOR_Lab2RGB)


def frame_lab_stats(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab).reshape(-1, 3).astype(np.float32)
    return lab.mean(axis=0), lab.std(axis=0) + 1e-3
