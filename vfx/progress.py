"""A progress bar with frames/s for long work (rich); silent when asked to be."""
from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn


class FrameProgress:
    def __init__(self, progress: Progress | None, task: TaskID | None):
        self._progress = progress
        self._task = task
        self._started = time.perf_counter()
        self._done = 0

    def start(self, total: int) -> None:
        self._started = time.perf_counter()
        if self._progress is not None:
            self._progress.update(self._task, total=total)

    def advance(self, frames: int) -> None:
        self._done += frames
        if self._progress is not None:
            fps = self._done / max(1e-6, time.perf_counter() - self._started)
            self._progress.update(self._task, advance=frames, fps=fps)


@contextmanager
def frame_progress(description: str, enabled: bool = True) -> Iterator[FrameProgress]:
    if not enabled:
        yield FrameProgress(None, None)
        return
    columns = (
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[fps]:.1f} frames/s"), TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        task = progress.add_task(description, total=None, fps=0.0)
        yield FrameProgress(progress, task)
