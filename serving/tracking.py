"""The tracking pass of a prompted shot job: phase one of two.

A box or clicks on a key frame (or SAM 2) can only be tracked through the shot in order, so
one worker walks the whole shot once and stores every frame's matte on shared storage
(``vfx.segment.stored.MatteStore`` under the job folder); phase two renders chunks in parallel
on any node, replaying those mattes (``render_config``). The tracker's state is checkpointed
after every batch, once that batch's mattes are durable, so a pass that dies resumes at the
next frame; the tracker seeds its randomness per frame, so a resumed pass stores the very
mattes an uninterrupted one would.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vfx import registry
from vfx.config import PipelineConfig
from vfx.devices import default_batch_size, resolve_device
from vfx.frames import ShotState, Step
from vfx.job import plan_steps
from vfx.segment import parse_subject
from vfx.segment.prompt import TrackState
from vfx.segment.stored import MatteStore
from vfx.video import FrameRange, FrameReader, probe


def needs_tracking(config: PipelineConfig) -> bool:
    """A prompted subject or SAM 2 carries memory from frame to frame: it cannot start mid-shot."""
    return parse_subject(config.segment.subject).kind == "prompt" or config.segment.backend == "sam"


def mattes_dir(job_dir: Path) -> Path:
    return Path(job_dir) / "mattes"


def render_config(config: PipelineConfig, job_dir: Path) -> PipelineConfig:
    """What a render chunk runs: a tracked job replays its own stored mattes. A folder named in
    the submitted config is never used (it could point anywhere on the node)."""
    tracked = needs_tracking(config)
    segment = config.segment.model_copy(update={"stored_mattes": str(mattes_dir(job_dir)) if tracked else None,
                                                **({"backend": "stored"} if tracked else {})})
    return config.model_copy(update={"segment": segment})


def track_shot(source: str, config: PipelineConfig, job_dir: Path, first: int, last: int,
               progress: Callable[[int], None], cancelled: Callable[[], bool]) -> int:
    """Track frames ``first..last`` into the job's matte store; returns the frames tracked by this call."""
    store = MatteStore(mattes_dir(job_dir))
    if store.completed() is not None:
        return 0
    info = probe(source)
    device = resolve_device(config.device)
    config = config.model_copy(update={"segment": config.segment.model_copy(update={"stored_mattes": None})})
    choice = plan_steps(config, device).get("segment")
    tracker: Step = registry.build(choice, config, device)
    shot = ShotState(width=info.width, height=info.height, fps=float(info.fps), first_frame=first, last_frame=last,
                     source_path=info.path, project=config.consent.project)
    strict = config.output.on_bad_frames == "fail"
    start = _resume(store, tracker, shot, first)
    tracked = 0
    try:
        if start is None:
            tracker.prepare(shot, lambda a, b: FrameReader(info, FrameRange(a, b), strict=strict).frames())
            start = first
        if start <= last:
            reader = FrameReader(info, FrameRange(start, last), strict=strict)
            for batch in reader.batches(config.batch_size or default_batch_size(device)):
                if cancelled():
                    raise InterruptedError("cancelled")
                batch = tracker(batch, shot)
                for number, matte in zip(batch.indices.tolist(), batch.matte):
                    store.put(number, matte)
                store.sync()
                snapshot = _checkpoint_of(tracker, shot)
                if snapshot is not None:
                    store.save_checkpoint(int(batch.indices[-1]), snapshot)
                tracked += len(batch)
                progress(len(batch))
    finally:
        tracker.finish(shot)
    store.mark_complete(first, last, choice.backend, dict(tracker.model_hashes))
    return tracked


def _checkpoint_of(tracker: Step, shot: ShotState) -> Any | None:
    """The tracker's state, if it can be saved: GrabCut + flow's can (small arrays); SAM 2's lives in
    GPU memory, so a SAM pass that dies tracks again from the start."""
    state = shot.steps.get(tracker.name)
    if isinstance(state, TrackState):
        return dataclasses.replace(state, backward=None)  # the masks before the key frame are stored by now
    return None


def _resume(store: MatteStore, tracker: Step, shot: ShotState, first: int) -> int | None:
    """The frame to carry on from after a checkpoint, or None to track from the start."""
    saved = store.load_checkpoint()
    if saved is None:
        return None
    frame, state = saved
    if not isinstance(state, TrackState) or frame + 1 < state.key_frame or frame < first:
        return None  # frames before the key frame come from the backward pass, which is not saved
    if not all(store.has(n) for n in range(first, frame + 1)):
        return None
    shot.steps[tracker.name] = state
    return frame + 1
