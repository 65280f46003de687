"""One shot, end to end: the function the command line and the service both call."""
from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from vfx.config import PipelineConfig
from vfx.devices import default_batch_size, resolve_device
from vfx.errors import VfxError
from vfx.frames import ShotState, Step
from vfx.pipeline import Pipeline, Sink
from vfx.restyle import build_restyler
from vfx.segment import build_segmenter
from vfx.video import FrameRange, FrameReader, FrameWriter, MatteWriter, parse_frame_range, probe
from vfx.video.probe import VideoInfo
from vfx.video.writer import check_output_path

log = logging.getLogger(__name__)


@dataclass
class JobSpec:
    input: str
    output: str
    config: PipelineConfig = field(default_factory=PipelineConfig)
    frames: str | None = None  # "FIRST-LAST", inclusive
    matte: str | None = None


@dataclass
class JobResult:
    output: str
    matte: str | None
    frame_range: FrameRange
    frames: int
    seconds: float
    bad_frames: list[int]
    device: str
    batch_size: int
    steps: list[str]
    backends: dict[str, str]

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0


def build_steps(config: PipelineConfig, device: str) -> list[Step]:
    """Segment first (it reads the untouched frames), then the restyle that composites over it."""
    steps = [s for s in (build_segmenter(config.segment, device), build_restyler(config.restyle, device)) if s is not None]
    if not steps:
        raise VfxError("nothing to do: give --subject and/or --style, --style-image or --prompt")
    return steps


def plan(spec: JobSpec) -> tuple[VideoInfo, FrameRange]:
    """Check everything about a job that can be checked before any frame is decoded."""
    info = probe(spec.input)
    frame_range = parse_frame_range(spec.frames, info)
    for path in filter(None, (spec.output, spec.matte)):
        check_output_path(path)
        if not info.is_sequence and Path(path).exists() and os.path.samefile(path, spec.input):
            raise VfxError(f"{path}: output would overwrite the input")
    return info, frame_range


def run_job(spec: JobSpec, progress: Callable[[int], None] | None = None,
            cancelled: Callable[[], bool] | None = None, on_start: Callable[[int], None] | None = None) -> JobResult:
    info, frame_range = plan(spec)
    config = spec.config
    device = resolve_device(config.device)
    steps = build_steps(config, device)
    batch_size = config.batch_size or default_batch_size(device)
    shot = ShotState(width=info.width, height=info.height, fps=float(info.fps), first_frame=frame_range.first,
                     last_frame=frame_range.last, source_path=info.path, project=config.consent.project)
    strict = config.output.on_bad_frames == "fail"
    for step in steps:
        prepare = getattr(step, "prepare", None)
        if prepare is not None:
            prepare(shot, lambda first, last: FrameReader(info, FrameRange(first, last), strict=strict).frames())
    if on_start is not None:
        on_start(len(frame_range))
    reader = FrameReader(info, frame_range, strict=strict)
    sinks: list[Sink] = [FrameWriter(spec.output, info, frame_range, keep_audio=config.output.keep_audio,
                                     crf=config.output.crf, preset=config.output.preset,
                                     with_alpha=spec.output.lower().endswith(".exr"))]
    try:
        if spec.matte:
            sinks.append(MatteWriter(spec.matte, info, frame_range))
        result = Pipeline(steps, queue_depth=config.queue_depth)(reader.batches(batch_size), shot, sinks, progress, cancelled)
    except BaseException:
        for sink in sinks:
            sink.abort()
        raise
    finally:
        for step in steps:
            finish = getattr(step, "finish", None)
            if finish is not None:
                finish(shot)
    return JobResult(
        output=spec.output, matte=spec.matte, frame_range=frame_range, frames=result.frames, seconds=result.seconds,
        bad_frames=reader.bad_frames, device=device, batch_size=batch_size, steps=[s.name for s in steps],
        backends={s.name: type(s).__name__ for s in steps},
    )
