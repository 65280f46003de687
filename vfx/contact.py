"""Before/after contact sheets and matte previews: pictures people would rather look at than read."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from vfx.video.sequence import write_image_rgb


def _label(image: np.ndarray, text: str) -> np.ndarray:
    out = image.copy()
    scale = max(0.4, image.shape[1] / 700)
    thickness = max(1, int(round(scale * 1.5)))
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    cv2.rectangle(out, (0, 0), (tw + 12, th + 14), (0, 0, 0), -1)
    cv2.putText(out, text, (6, th + 6), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return out


def contact_sheet(rows: list[list[tuple[str, np.ndarray]]], width: int = 1600, gap: int = 6) -> np.ndarray:
    """A grid of labelled RGB tiles: one row per frame, one column per stage (before, matte, after...)."""
    columns = max(len(r) for r in rows)
    tile_w = (width - gap * (columns + 1)) // columns
    first = rows[0][0][1]
    tile_h = int(round(first.shape[0] * tile_w / first.shape[1]))
    sheet = np.full((gap + len(rows) * (tile_h + gap), width, 3), 24, dtype=np.uint8)
    for r, row in enumerate(rows):
        for c, (label, image) in enumerate(row):
            if image.ndim == 2:
                image = np.repeat(image[..., None], 3, axis=-1)
            tile = cv2.resize(image, (tile_w, tile_h), interpolation=cv2.INTER_AREA)
            y, x = gap + r * (tile_h + gap), gap + c * (tile_w + gap)
            sheet[y:y + tile_h, x:x + tile_w] = _label(tile, label)
    return sheet


def save_contact_sheet(path: str | Path, rows: list[list[tuple[str, np.ndarray]]], width: int = 1600) -> Path:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial{path.suffix}")
    write_image_rgb(tmp, contact_sheet(rows, width))
    tmp.replace(path)
    return path
