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
    np.copyto(out, original, where=(alpha >= 1.0)[..., None])  # exact, not merely within rounding
    edge = (alpha > 0.0) & (alpha < 1.0)
    if not edge.any():
        return out
    ys, xs = np.nonzero(edge)
    pad = int(4 * reach_px)
    h, w = alpha.shape
    sl = (slice(max(0, ys.min() - pad), min(h, ys.max() + pad + 1)), slice(max(0, xs.min() - pad), min(w, xs.max() + pad + 1)))
    a = alpha[sl][..., None]
    source = original[sl].astype(np.float32)
    background = _background_estimate(source, (alpha[sl] <= 0.0).astype(np.float32), reach_px)
    blended = source + (1.0 - a) * (restyled[sl].astype(np.float32) - background)
    region = out[sl]
    band = edge[sl]
    region[band] = np.clip(blended[band] + 0.5, 0, 255).astype(np.uint8)
    return out


def _background_estimate(source: np.ndarray, known: np.ndarray, reach_px: float) -> np.ndarray:
    """Colour of the pure background spread into the edge band (normalised convolution)."""
    weight = cv2.GaussianBlur(known, (0, 0), reach_px)
    colour = cv2.GaussianBlur(source * known[..., None], (0, 0), reach_px)
    usable = weight > 1e-3
    estimate = source.copy()  # no background near: nothing to swap, the pixel stays as shot
    estimate[usable] = colour[usable] / weight[usable][..., None]
    return estimate


def composite(original: np.ndarray, restyled: np.ndarray, matte: np.ndarray | None) -> np.ndarray:
    """A batch [B,H,W,3] with matte [B,H,W] (or one frame with [H,W]), frames over the thread pool."""
    if matte is None:
        return restyled
    if original.ndim == 3:
        return composite_frame(original, restyled, matte)
    return np.stack(map_frames(lambda i: composite_frame(original[i], restyled[i], matte[i]), list(range(len(original)))))
