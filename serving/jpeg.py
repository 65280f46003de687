"""JPEG frames from strangers: size read from the header before anything is decoded.

A few kilobytes of JPEG can declare 32768 x 32768 pixels and decode to gigabytes; the frame
header (SOF) says so before the decoder allocates anything, so the check reads only markers.
"""
from __future__ import annotations

import struct

import cv2
import numpy as np

JPEG_QUALITY = 90
# Start-of-frame markers carry the size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but are not frames.
SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM, RSTn: markers without a length


def jpeg_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the JPEG's frame header; ValueError when it is not a JPEG or has none."""
    if not data.startswith(b"\xff\xd8"):
        raise ValueError("not a JPEG")
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            raise ValueError("not a JPEG: damaged marker structure")
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in STANDALONE:
            position += 2
            continue
        (length,) = struct.unpack(">H", data[position + 2:position + 4])
        if marker in SOF_MARKERS:
            if position + 9 > len(data) or length < 8:
                raise ValueError("not a JPEG: truncated frame header")
            height, width = struct.unpack(">HH", data[position + 5:position + 9])
            if width == 0 or height == 0:
                raise ValueError("JPEG declares no size in its frame header")
            return width, height
        if marker in (0xD9, 0xDA) or length < 2:  # end of image, or scan data before any frame header
            break
        position += 2 + length
    raise ValueError("not a JPEG: no frame header")


def check_jpeg(data: bytes, max_bytes: int, max_width: int, max_height: int) -> tuple[int, int]:
    """Refuse an oversized or over-large frame before decoding it; returns (width, height)."""
    if len(data) > max_bytes:
        raise ValueError(f"frame is {len(data)} bytes; the limit is {max_bytes}")
    width, height = jpeg_size(data)
    if width > max_width or height > max_height:
        raise ValueError(f"frame declares {width}x{height}; the limit is {max_width}x{max_height}")
    return width, height


def decode_jpeg(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("not a decodable JPEG")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def encode_jpeg(rgb: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return data.tobytes()


def encode_gray_jpeg(plane: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", plane)
    if not ok:
        raise ValueError("matte encoding failed")
    return data.tobytes()
