"""FrameBatch, ShotState and Step: the data every step takes and returns, and the step contract.

A step sees whole batches; whatever it must remember between batches of one shot lives in
``shot``, never in the step object or a module global, so one step instance can serve many shots.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from vfx.errors import VfxError


@dataclass
class Face:
    """One face in one frame, as found by detection and decided by the consent gate."""

    box: tuple[float, float, float, float]  # x, y, w, h in pixels
    landmarks: np.ndarray  # float32 [N, 2] pixel coordinates
    track_id: int = -1
    embedding: np.ndarray | None = None  # identity embedding, when computed
    subject: str | None = None  # enrolled subject this face matched, if any
    allowed_ops: dict[str, str] = field(default_factory=dict)  # operation -> grant id
    refused_ops: dict[str, str] = field(default_factory=dict)  # operation -> reason


@dataclass
class FrameBatch:
    """A run of consecutive frames of one shot.

    frames: uint8 [B, H, W, 3] RGB. indices: frame numbers (file numbers for image sequences,
    0-based for video containers). timestamps: seconds from the start of the source.
    matte: float32 [B, H, W], 1 = subject, set by a segmentation step.
    """

    frames: np.ndarray
    indices: np.ndarray
    timestamps: np.ndarray
    matte: np.ndarray | None = None
    faces: list[list[Face]] | None = None
    source: np.ndarray | None = None  # untouched input frames, kept once a step edits `frames`
    mattes: dict[str, np.ndarray] | None = None  # several subjects: each one's matte by id; `matte` is their union
    motions: list[Any] | None = None  # each frame's motion against the one before, from a flow stage (vfx.restyle.temporal)

    def __post_init__(self) -> None:
        if self.frames.dtype != np.uint8 or self.frames.ndim != 4 or self.frames.shape[-1] != 3:
            raise ValueError(f"frames must be uint8 [B,H,W,3], got {self.frames.dtype} {self.frames.shape}")
        if len(self.indices) != len(self.frames) or len(self.timestamps) != len(self.frames):
            raise ValueError("indices and timestamps must have one entry per frame")

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the frames."""
        return int(self.frames.shape[2]), int(self.frames.shape[1])

    @property
    def originals(self) -> np.ndarray:
        """The input frames as decoded, before any step changed them."""
        return self.source if self.source is not None else self.frames


@dataclass
class ShotState:
    """Everything known about one shot while it is processed.

    ``steps`` holds each step's own memory between batches (previous matte, tracker, colour
    statistics...), keyed by the step's name, so steps stay stateless objects.
    """

    width: int
    height: int
    fps: float
    first_frame: int
    last_frame: int
    source_path: str = ""
    project: str | None = None
    steps: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)  # per-shot summaries for the ledger/manifest

    @property
    def frame_count(self) -> int:
        return self.last_frame - self.first_frame + 1


def frame_ranges(numbers: list[int]) -> list[list[int]]:
    """[3, 4, 5, 9] -> [[3, 5], [9, 9]]: frame numbers as inclusive runs, for reports and ledgers."""
    runs: list[list[int]] = []
    for number in sorted(set(numbers)):
        if runs and number == runs[-1][1] + 1:
            runs[-1][1] = number
        else:
            runs.append([number, number])
    return runs


FrameSource = Callable[[int, int], Iterator[tuple[int, np.ndarray]]]  # (first, last) -> (number, rgb) of the shot


def require_frames(frames: FrameSource | None, step: str, key_frame: int) -> FrameSource:
    """The shot's frame reader, for a step that must read frames before its key frame."""
    if frames is None:
        raise VfxError(f"{step}: a prompt on frame {key_frame} tracks back to the start of the shot, which needs "
                       "the shot's frames (a live stream can only be prompted on its first frame)")
    return frames


class Step(ABC):
    """One stage of the pipeline. ``Pipeline`` drives the whole lifecycle for every shot, so every
    caller (command line, shot job, live stream) gets the same behaviour:

    1. ``prepare(shot, frames)`` once before the first batch; ``frames(first, last)`` re-reads the
       shot (a tracker prompted on a later key frame tracks backward first). ``frames`` is None for
       a live stream, which has no shot to re-read.
    2. ``__call__(batch, shot)`` for every batch, in frame order, in one thread per step.
    3. ``finish(shot)`` once after the last batch, also after a failure; it may return a report
       (what was done, per subject and operation) that the job record and the ledger keep.

    A step writes only its own entry of ``shot.steps``; what later steps need travels on the batch.
    ``audio_path``: the soundtrack the output must carry instead of the source's. ``model_hashes``:
    ``model/file -> sha256`` of every weight file the step loaded, for provenance.
    """

    name: str = "step"
    audio_path: str | None = None
    model_hashes: Mapping[str, str] = MappingProxyType({})

    def prepare(self, shot: ShotState, frames: FrameSource | None) -> None:
        return None

    @abstractmethod
    def __call__(self, batch: FrameBatch, shot: ShotState) -> FrameBatch: ...

    def finish(self, shot: ShotState) -> dict[str, Any] | None:
        return None

    def stages(self) -> list[Step]:
        """The pipeline stages this step runs as, in order, each in its own thread: a step whose work
        splits into parts that can overlap (the neural restyle's optical flow, then its painting)
        returns them all; most steps are one stage."""
        return [self]
