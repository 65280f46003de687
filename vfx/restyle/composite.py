"""Put the untouched subject back over the restyled surroundings (alpha-over)."""
from __future__ import annotations

import cv2
import numpy as np

from vfx.parallel import map_frames


def composite_frame(original: np.ndarray, restyled: np.ndarray, matte: np.ndarray, reach_px: float = 8.0) -> np.ndarray:
    """One frame: alpha 1 -> the original pixel exactly; 0 -> restyled; in between alpha-over.

    An edge pixel is ``alpha * subject + (1 - alpha) * old background``. Blending it with the
    restyled frame as it is would keep its share of old background (a daylight halo at night);
    instead that share is estimated from the nearby pure-background pixels and swapped for the
    restyled background: ``out = original + (1 - alpha) * (restyled - background)``.
    """
    alpha = np.ascontiguousarray(matte, dtype=np.float32)
    out = restyled.copy()
    cv2.copyTo(original, (alpha >= 1.0).view(np.uint8), out)  # exact, not merely within rounding
    edge = (alpha > 0.0) & (alpha < 1.0)
    if not edge.any():
        return out
    ys, xs = np.nonzero(edge)
    pad = int(4 * reach_px)
    h, w = alpha.shape
    y0, x0 = max(0, ys.min() - pad), max(0, xs.min() - pad)
    sl = (slice(y0, min(h, ys.max() + pad + 1)), slice(x0, min(w, xs.max() + pad + 1)))
    background = _background_estimate(original[sl], alpha[sl] <= 0.0, reach_px, (ys - y0, xs - x0))
    a = alpha[ys, xs][:, None]
    source = original[ys, xs].astype(np.float32)
    blended = source + (1.0 - a) * (restyled[ys, xs].astype(np.float32) - background)
    out[ys, xs] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
    return out


def _background_estimate(source: np.ndarray, known: np.ndarray, reach_px: float,
                         at: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Colour of the pure background spread to the pixels ``at`` (normalised convolution), [N,3].

    A Gaussian of ``reach_px`` is smooth, so it runs on a copy shrunk by about reach_px / 2 (area
    averaging) and comes back by bilinear interpolation: the same field to a fraction of a level on
    average, at a fraction of the cost of blurring the full-size region.
    """
    h, w = known.shape
    scale = max(1, int(reach_px // 2))
    small = (max(1, w // scale), max(1, h // scale))
    sigma = reach_px * small[0] / w
    weight = known.astype(np.float32)
    colour = np.multiply(source, weight[..., None], dtype=np.float32)
    weight = cv2.GaussianBlur(cv2.resize(weight, small, interpolation=cv2.INTER_AREA), (0, 0), sigma)
    colour = cv2.GaussianBlur(cv2.resize(colour, small, interpolation=cv2.INTER_AREA), (0, 0), sigma)
    weight = cv2.resize(weight, (w, h), interpolation=cv2.INTER_LINEAR)[at]
    colour = cv2.resize(colour, (w, h), interpolation=cv2.INTER_LINEAR)[at]
    estimate = source[at].astype(np.float32)  # no background near: nothing to swap, the pixel stays as shot
    usable = weight > 1e-3
    estimate[usable] = colour[usable] / weight[usable][:, None]
    return estimate


def composite(original: np.ndarray, restyled: np.ndarray, matte: np.ndarray | None) -> np.ndarray:
    """A batch [B,H,W,3] with matte [B,H,W] (or one frame with [H,W]), frames over the thread pool."""
    if matte is None:
        return restyled
    if original.ndim == 3:
        return composite_frame(original, restyled, matte)
    return np.stack(map_frames(lambda i: composite_frame(original[i], restyled[i], matte[i]), list(range(len(original)))))
