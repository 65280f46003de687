"""One thread pool per process for CPU-bound per-frame work (OpenCV, mediapipe release the GIL)."""
from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

_pool: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def cpu_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def _shared_pool() -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=cpu_workers(), thread_name_prefix="vfx-frame")
        return _pool


def map_frames(function: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """``[function(x) for x in items]`` across the pool, in order."""
    if len(items) <= 1:
        return [function(x) for x in items]
    return list(_shared_pool().map(function, items))
