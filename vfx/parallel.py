"""One thread pool per process for CPU-bound per-frame work (OpenCV, mediapipe release the GIL)."""
from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_pool: ThreadPoolExecutor | None = None
_lock = threading.Lock()


class Lender(Generic[T]):
    """Instances of a model one thread may use at a time (mediapipe graphs), lent and taken back.

    A process holds as many as ran at once, however many threads, steps, jobs and streams came and
    went. Per-thread copies do not work here: a mediapipe graph dropped without ``close()`` keeps its
    memory (about 120 MB for the person models), and pools, stage threads and streams come and go.
    """

    def __init__(self, make: Callable[[], T]):
        self.make = make
        self.free: list[T] = []
        self.made = 0
        self._lock = threading.Lock()

    @contextmanager
    def lend(self) -> Iterator[T]:
        with self._lock:
            item = self.free.pop() if self.free else None
        if item is None:
            item = self.make()
            with self._lock:
                self.made += 1
        try:
            yield item
        finally:
            with self._lock:
                self.free.append(item)


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
