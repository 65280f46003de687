"""One thread pool per process for CPU-bound per-frame work (OpenCV, mediapipe release the GIL)."""
from __future__ import annotations

import heapq
import itertools
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_pool: PriorityPool | None = None
_lock = threading.Lock()
_local = threading.local()


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


class PriorityPool:
    """Worker threads that take the waiting task of highest priority first (first come among equals).

    A pipeline's stages share the pool. First come, first served, a later stage's short tasks waited
    behind the flow stage's long ones, so the later stages fell behind and finished alone at the end
    of every job, on fewer cores than the machine has.
    """

    def __init__(self, workers: int, name: str):
        self._tasks: list[tuple[int, int, Callable[[], Any], Future]] = []
        self._order = itertools.count()
        self._ready = threading.Condition()
        for index in range(workers):
            threading.Thread(target=self._work, name=f"{name}_{index}", daemon=True).start()

    def submit(self, task: Callable[[], R], priority: int = 0) -> Future:
        future: Future = Future()
        with self._ready:
            heapq.heappush(self._tasks, (-priority, next(self._order), task, future))
            self._ready.notify()
        return future

    def _work(self) -> None:
        while True:
            with self._ready:
                while not self._tasks:
                    self._ready.wait()
                _, _, task, future = heapq.heappop(self._tasks)
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(task())
            except BaseException as exc:  # handed to the caller, which raises it
                future.set_exception(exc)


def _shared_pool() -> PriorityPool:
    global _pool
    with _lock:
        if _pool is None:
            _pool = PriorityPool(cpu_workers(), "vfx-frame")
        return _pool


@contextmanager
def priority(level: int) -> Iterator[None]:
    """``map_frames`` calls from this thread go ahead of lower levels' (a pipeline's later stages: higher)."""
    before = getattr(_local, "priority", 0)
    _local.priority = level
    try:
        yield
    finally:
        _local.priority = before


def map_frames(function: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """``[function(x) for x in items]`` across the pool, in order."""
    if len(items) <= 1:
        return [function(x) for x in items]
    pool, level = _shared_pool(), getattr(_local, "priority", 0)
    futures = [pool.submit(lambda x=x: function(x), level) for x in items]
    return [future.result() for future in futures]
