"""decode -> steps -> encode, overlapped: every stage runs in its own thread with bounded queues.

While batch n is being encoded, batch n+1 is restyled, batch n+2 segmented and batch n+3
decoded. Queues hold at most ``queue_depth`` batches, so memory depends on the batch size and
frame size only, never on the length of the shot. The pipeline drives each step's whole
lifecycle (``vfx.frames.Step``): prepare, every batch, finish.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from vfx.frames import FrameBatch, FrameSource, ShotState, Step
from vfx.parallel import priority

log = logging.getLogger(__name__)
_END = object()


class Sink(Protocol):
    def write(self, batch: FrameBatch) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...


@dataclass
class PipelineResult:
    frames: int
    seconds: float
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)  # step name -> what its finish() reported

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


class _Failed(Exception):
    pass


class Pipeline:
    """Runs ``steps`` over batches from ``batches`` into ``sinks``; call it once per shot."""

    def __init__(self, steps: list[Step], queue_depth: int = 2):
        for step in steps:
            if not isinstance(step, Step):
                raise TypeError(f"pipeline step {step!r} must subclass vfx.frames.Step")
        if len({step.name for step in steps}) != len(steps):
            raise ValueError(f"pipeline step names must be unique (each owns shot.steps[name]): {[s.name for s in steps]}")
        if queue_depth < 1:
            raise ValueError(f"queue_depth must be at least 1, got {queue_depth}")
        self.steps = steps
        self.queue_depth = queue_depth

    def __call__(self, batches: Iterable[FrameBatch], shot: ShotState, sinks: list[Sink],
                 progress: Callable[[int], None] | None = None,
                 cancelled: Callable[[], bool] | None = None,
                 frames: FrameSource | None = None) -> PipelineResult:
        """Run one shot. ``frames(first, last)`` re-reads the shot for steps that prepare on it."""
        started = time.perf_counter()
        prepared: list[Step] = []
        try:
            for step in self.steps:
                step.prepare(shot, frames)
                prepared.append(step)
            result = self._run(batches, shot, sinks, progress, cancelled)
        except BaseException:
            for step in prepared:
                try:
                    step.finish(shot)
                except Exception:  # the original failure is the one to report
                    log.exception("step %s failed to finish after an earlier error", step.name)
            raise
        for step in self.steps:
            report = step.finish(shot)
            if report:
                result.reports[step.name] = report
        result.seconds = time.perf_counter() - started
        return result

    def _run(self, batches: Iterable[FrameBatch], shot: ShotState, sinks: list[Sink],
             progress: Callable[[int], None] | None, cancelled: Callable[[], bool] | None) -> PipelineResult:
        started = time.perf_counter()
        stop = threading.Event()
        errors: list[BaseException] = []
        queues = [queue.Queue(self.queue_depth) for _ in range(len(self.steps) + 1)]
        threads = [threading.Thread(target=self._feed, args=(batches, queues[0], stop, errors), name="vfx-decode", daemon=True)]
        for level, (step, inbox, outbox) in enumerate(zip(self.steps, queues, queues[1:]), start=1):
            threads.append(threading.Thread(target=self._stage, args=(step, shot, inbox, outbox, stop, errors, level),
                                            name=f"vfx-{step.name}", daemon=True))
        for thread in threads:
            thread.start()
        frames = 0
        try:
            for batch in _drain(queues[-1], stop):
                for sink in sinks:
                    sink.write(batch)
                frames += len(batch)
                if progress is not None:
                    progress(len(batch))
                if cancelled is not None and cancelled():
                    raise InterruptedError("cancelled")
            if errors:
                raise errors[0]
            for sink in sinks:
                sink.close()
        except BaseException as exc:
            stop.set()
            for sink in sinks:
                sink.abort()
            for thread in threads:
                thread.join(timeout=10)
            if isinstance(exc, _Failed) and errors:
                raise errors[0] from None
            raise
        finally:
            stop.set()
        for thread in threads:
            thread.join()
        return PipelineResult(frames=frames, seconds=time.perf_counter() - started)

    @staticmethod
    def _feed(batches: Iterable[FrameBatch], outbox: queue.Queue, stop: threading.Event, errors: list) -> None:
        try:
            for batch in batches:
                if not _put(outbox, batch, stop):
                    return
        except BaseException as exc:  # handed to the main thread, which raises it
            errors.append(exc)
            stop.set()
        _put(outbox, _END, stop)

    @staticmethod
    def _stage(step: Step, shot: ShotState, inbox: queue.Queue, outbox: queue.Queue,
               stop: threading.Event, errors: list, level: int) -> None:
        try:
            with priority(level):  # later stages' per-frame work first: the frames nearest the output
                for batch in _drain(inbox, stop):
                    if not _put(outbox, step(batch, shot), stop):
                        return
        except _Failed:
            return
        except BaseException as exc:
            errors.append(exc)
            stop.set()
            return
        _put(outbox, _END, stop)


def _put(box: queue.Queue, item: Any, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            box.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _drain(box: queue.Queue, stop: threading.Event) -> Iterator[FrameBatch]:
    while True:
        try:
            item = box.get(timeout=0.1)
        except queue.Empty:
            if stop.is_set():
                raise _Failed()
            continue
        if item is _END:
            return
        yield item
