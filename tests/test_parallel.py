"""The shared per-frame pool: a pipeline's later stages go first, results come back in order, errors reach the caller."""
from __future__ import annotations

import threading

import pytest

from vfx.parallel import PriorityPool, map_frames, priority


def test_waiting_work_of_a_higher_priority_runs_first():
    pool = PriorityPool(1, "test-pool")
    started, release, ran = threading.Event(), threading.Event(), []

    def hold() -> None:
        started.set()
        release.wait(10)

    pool.submit(hold)
    assert started.wait(10)  # the one worker is busy: everything below waits in the queue
    futures = [pool.submit(lambda name=name: ran.append(name), level) for name, level in
               (("flow a", 1), ("stabilise", 3), ("flow b", 1), ("paint", 2))]
    release.set()
    for future in futures:
        future.result(10)
    assert ran == ["stabilise", "paint", "flow a", "flow b"]


def test_map_frames_keeps_the_order_and_raises_the_first_error():
    with priority(2):
        assert map_frames(lambda x: x * x, list(range(20))) == [x * x for x in range(20)]

    def fails(x: int) -> int:
        if x == 3:
            raise ValueError("frame 3")
        return x

    with pytest.raises(ValueError, match="frame 3"):
        map_frames(fails, list(range(8)))
