"""Fixed-shape uint8 arrays in a temporary file, addressed by index.

Backward tracking needs the frames before a key frame in reverse order, and their masks later
in forward order; keeping them on disk keeps memory flat however far away the key frame is.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np


class Spool:
    def __init__(self, shape: tuple[int, ...], prefix: str = "vfx-spool-"):
        self.shape = tuple(shape)
        self.nbytes = int(np.prod(self.shape))
        self._dir = tempfile.TemporaryDirectory(prefix=prefix)
        self.path = Path(self._dir.name) / "arrays.raw"
        self.path.touch()

    def put(self, index: int, array: np.ndarray) -> None:
        if array.shape != self.shape:
            raise ValueError(f"spool holds {self.shape} arrays, got {array.shape}")
        with open(self.path, "r+b") as f:
            f.seek(index * self.nbytes)
            f.write(np.ascontiguousarray(array, dtype=np.uint8).tobytes())

    def get(self, index: int) -> np.ndarray:
        with open(self.path, "rb") as f:
            f.seek(index * self.nbytes)
            data = f.read(self.nbytes)
        if len(data) != self.nbytes:
            raise IndexError(f"nothing spooled at {index}")
        return np.frombuffer(data, dtype=np.uint8).reshape(self.shape)

    def close(self) -> None:
        self._dir.cleanup()
