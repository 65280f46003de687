"""Put the untouched subject back over the restyled surroundings."""
from __future__ import annotations

import cv2
import numpy as np

from vfx.parallel import map_frames


def composite_frame(original: np.ndarray, restyled: np.ndarray, matte: np.ndarray) -> np.ndarray:
    """One frame: ``matte`` 1 -> the original pixel exactly; 0 -> restyled; in between a linear blend."""
    alpha = np.ascontiguousarray(matte, dtype=np.float32)
    out = cv2.blendLinear(original, restyled, alpha, 1.0 - alpha)
    np.copyto(out, original, where=(alpha >= 1.0)[..., None])  # exact, not merely within rounding
    return out


def composite(original: np.ndarray, restyled: np.ndarray, matte: np.ndarray | None) -> np.ndarray:
    """A batch [B,H,W,3] with matte [B,H,W] (or one frame with [H,W]), frames over the thread pool."""
    if matte is None:
        return restyled
    if original.ndim == 3:
        return composite_frame(original, restyled, matte)
    return np.stack(map_frames(lambda i: composite_frame(original[i], restyled[i], matte[i]), list(range(len(original)))))
