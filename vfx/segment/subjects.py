"""Several subjects at once: one segmenter per subject, one matte each, their union for the restyle."""
from __future__ import annotations

from typing import Any

import numpy as np

from vfx.frames import FrameBatch, FrameSource, ShotState, Step


class SubjectSet(Step):
    """Runs each subject's segmenter on the batch; ``batch.mattes[id]`` per subject, ``batch.matte`` their union."""

    name = "segment"

    def __init__(self, steps: dict[str, Any]):
        self.steps = steps
        for subject, step in steps.items():
            step.name = f"segment.{subject}"  # each subject's memory sits apart in shot.steps

    @property
    def model_hashes(self) -> dict[str, str]:
        hashes: dict[str, str] = {}
        for step in self.steps.values():
            hashes.update(getattr(step, "model_hashes", {}) or {})
        return hashes

    def prepare(self, shot: ShotState, frames: FrameSource | None) -> None:
        for step in self.steps.values():
            step.prepare(shot, frames)

    def __call__(self, batch: FrameBatch, shot: ShotState) -> FrameBatch:
        mattes = {}
        for subject, step in self.steps.items():
            mattes[subject] = step(batch, shot).matte
        batch.mattes = mattes
        batch.matte = np.maximum.reduce(list(mattes.values()))
        return batch

    def finish(self, shot: ShotState) -> dict | None:
        for step in self.steps.values():
            step.finish(shot)
        return None
