"""Before/after contact sheets: a picture someone can look at to judge a face edit."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def contact_sheet(pairs: list[tuple[np.ndarray, np.ndarray, str]], path: str | Path, tile: int = 320) -> Path:
    """One row per (before, after, label): RGB uint8 images scaled to ``tile`` px high, side by side."""
    rows = []
    for before, after, label in pairs:
        scale = tile / before.shape[0]
        size = (max(1, int(round(before.shape[1] * scale))), tile)
        a = cv2.resize(before, size, interpolation=cv2.INTER_CUBIC)
        b = cv2.resize(after, size, interpolation=cv2.INTER_CUBIC)
        row = np.concatenate([a, np.full((tile, 6, 3), 255, np.uint8), b], axis=1)
        cv2.putText(row, label, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 0), 2, cv2.LINE_AA)
        rows.append(row)
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 6), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(rows, axis=0), cv2.COLOR_RGB2BGR))
    return path


def face_crop(image: np.ndarray, box: tuple[float, float, float, float], pad: float = 0.25) -> np.ndarray:
    x, y, w, h = box
    x0, y0 = max(0, int(x - pad * w)), max(0, int(y - pad * h))
    x1, y1 = min(image.shape[1], int(x + (1 + pad) * w)), min(image.shape[0], int(y + (1 + pad) * h))
    return image[y0:y1, x0:x1]
