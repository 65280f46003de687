"""Image sequences: ``shot.%04d.png`` / ``.exr`` / ``.jpg`` / ``.tif``, numbered like VFX plates."""
from __future__ import annotations

import os
import re
from pathlib import Path

os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")  # must be set before cv2 is imported
import cv2  # noqa: E402
import numpy as np  # noqa: E402

from vfx.errors import VfxError  # noqa: E402

SEQUENCE_EXTENSIONS = {".png", ".exr", ".jpg", ".jpeg", ".tif", ".tiff", ".dpx"}
_PATTERN = re.compile(r"%0?(\d*)d")


def is_sequence_pattern(path: str | os.PathLike) -> bool:
    return _PATTERN.search(os.path.basename(str(path))) is not None


def sequence_files(pattern: str) -> dict[int, Path]:
    """Map frame number -> file for a printf-style pattern such as ``shot.%04d.png``."""
    directory = Path(pattern).parent
    name = Path(pattern).name
    match = _PATTERN.search(name)
    if match is None:
        raise VfxError(f"{pattern}: not an image-sequence pattern (expected something like shot.%04d.png)")
    width = match.group(1)
    digits = rf"\d{{{int(width)}}}" if width else r"\d+"
    regex = re.compile("^" + re.escape(name[: match.start()]) + f"({digits})" + re.escape(name[match.end():]) + "$")
    if not directory.is_dir():
        raise VfxError(f"{pattern}: directory {directory} does not exist")
    files = {}
    for entry in directory.iterdir():
        m = regex.match(entry.name)
        if m:
            files[int(m.group(1))] = entry
    return files


def frame_path(pattern: str, number: int) -> Path:
    return Path(pattern % number)


def linear_to_srgb(linear: np.ndarray) -> np.ndarray:
    linear = np.clip(linear, 0.0, 1.0)
    return np.where(linear <= 0.0031308, linear * 12.92, 1.055 * np.power(linear, 1 / 2.4) - 0.055)


def srgb_to_linear(srgb: np.ndarray) -> np.ndarray:
    return np.where(srgb <= 0.04045, srgb / 12.92, np.power((srgb + 0.055) / 1.055, 2.4))


def read_image_rgb(path: Path) -> np.ndarray:
    """Read one image file as uint8 RGB; EXR (scene-linear) is converted to sRGB."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise VfxError(f"{path}: cannot read image")
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        image = image[:, :, :3]
    if image.dtype == np.uint16:
        image = (image / 257.0 + 0.5).astype(np.uint8)
    elif image.dtype in (np.float32, np.float16, np.float64):
        image = (linear_to_srgb(image.astype(np.float32)) * 255.0 + 0.5).astype(np.uint8)
    return np.ascontiguousarray(image[:, :, ::-1])


def write_image_rgb(path: Path, rgb: np.ndarray, alpha: np.ndarray | None = None) -> None:
    """Write uint8 RGB (and an optional float alpha in 0..1). EXR is written scene-linear half float."""
    bgr = rgb[:, :, ::-1]
    if path.suffix.lower() == ".exr":
        data = srgb_to_linear(bgr.astype(np.float32) / 255.0).astype(np.float32)
        if alpha is not None:
            data = np.dstack([data, alpha.astype(np.float32)])
        params = [cv2.IMWRITE_EXR_TYPE, cv2.IMWRITE_EXR_TYPE_HALF]
    else:
        data = bgr if alpha is None else np.dstack([bgr, (np.clip(alpha, 0, 1) * 255 + 0.5).astype(np.uint8)])
        params = []
    ok, encoded = cv2.imencode(path.suffix, np.ascontiguousarray(data), params)
    if not ok:
        raise VfxError(f"{path}: cannot encode image")
    path.write_bytes(encoded.tobytes())
