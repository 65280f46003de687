"""Put the untouched subject back over the restyled surroundings."""
from __future__ import annotations

import numpy as np


def composite(original: np.ndarray, restyled: np.ndarray, matte: np.ndarray | None) -> np.ndarray:
    """``matte`` 1 -> the original pixel exactly; 0 -> restyled; in between a linear blend.

    Works on one frame [H,W,3] or a batch [B,H,W,3] with matte [H,W] / [B,H,W].
    """
    if matte is None:
        return restyled
    alpha = matte[..., None].astype(np.float32)
    blended = original.astype(np.float32) * alpha + restyled.astype(np.float32) * (1.0 - alpha)
    out = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
    subject = matte >= 1.0
    out[subject] = original[subject]  # exact, not merely within rounding
    return out
