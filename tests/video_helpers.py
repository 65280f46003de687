"""Helpers for tests that decode what the pipeline wrote."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import av
import numpy as np

from vfx.video import FrameReader, probe


def read_all(path: str | Path) -> tuple[list[int], np.ndarray]:
    info = probe(str(path))
    numbers, frames = [], []
    for number, image in FrameReader(info).frames():
        numbers.append(number)
        frames.append(image)
    return numbers, np.stack(frames)


def audio_duration(path: str | Path) -> float:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        samples = 0
        for packet in container.demux(stream):
            try:
                samples += sum(frame.samples for frame in packet.decode())
            except av.InvalidDataError:  # Megamind.avi's AC-3 track has one damaged packet
                continue
        return samples / stream.codec_context.sample_rate


def run_cli(*args: str, cwd: str | Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vfx.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=600)


def write_sequence(folder: Path, frames: np.ndarray, first: int, pattern: str = "plate.%04d.png") -> str:
    from vfx.video.sequence import write_image_rgb

    for i, frame in enumerate(frames):
        write_image_rgb(folder / (pattern % (first + i)), frame)
    return str(folder / pattern)


def top_level_boxes(path: str | Path) -> list[str]:
    """The ISO-BMFF (MP4) top-level box types in file order."""
    import struct

    data = Path(path).read_bytes()
    kinds, offset = [], 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset:offset + 8])
        if size == 1:
            size = struct.unpack(">Q", data[offset + 8:offset + 16])[0]
        kinds.append(kind.decode("latin-1"))
        if size == 0:
            break
        offset += size
    return kinds
