"""One thread pool per process for CPU-bound per-frame work (OpenCV, mediapipe release the GIL)."""
from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_pool: ThreadPoolExecutor | None = None
_lock = threading.Lock()


class PerThread(Generic[T]):
    """One instance of a model per thread (mediapipe graphs are not thread-safe), all closed by ``close``.

    A mediapipe graph that is dropped without ``close()`` keeps its memory (about 120 MB for the
    person models): a service that builds steps per stream or job must close them.
    """

    def __init__(self, make: Callable[[], T]):
        self.make = make
        self._local = threading.local()
        self._made: list[T] = []
        self._lock = threading.Lock()

    def get(self) -> T:
        value = getattr(self._local, "value", None)
        if value is None:
            value = self._local.value = self.make()
            with self._lock:
                self._made.append(value)
        return value

    def close(self) -> None:
        with self._lock:
            made, self._made = self._made, []
            self._local = threading.local()
        for value in made:
            close = getattr(value, "close", None)
            if close is not None:
                close()


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
