"""One shot, end to end: the function the command line and the service both call."""
from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vfx.config import FaceConfig, PipelineConfig
from vfx.devices import default_batch_size, resolve_device
from vfx.errors import VfxError
from vfx.face import build_face_steps
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
    grant_ids: list[str] = field(default_factory=list)
    provenance: str | None = None

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0


def build_steps(config: PipelineConfig, device: str, gate: Any | None = None) -> list[Step]:
    """Segment first (it reads the untouched frames), then consent-gated face edits, then the
    restyle, which composites the (possibly edited) subject over the new surroundings."""
    steps = [build_segmenter(config.segment, device), *build_face_steps(config.face, gate),
             build_restyler(config.restyle, device)]
    steps = [s for s in steps if s is not None]
    if not steps:
        raise VfxError("nothing to do: give --subject, --style, --style-image, --prompt, --rejuvenate or --lipsync")
    return steps


def needs_consent(config: PipelineConfig) -> bool:
    return config.face.rejuvenate is not None or config.face.lipsync is not None


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
    gate = _open_gate(config) if needs_consent(config) else None
    steps = build_steps(config, device, gate)
    batch_size = config.batch_size or default_batch_size(device)
    shot = ShotState(width=info.width, height=info.height, fps=float(info.fps), first_frame=frame_range.first,
                     last_frame=frame_range.last, source_path=info.path, project=config.consent.project)
    job_record = {"input": info.path, "output": spec.output, "frames": [frame_range.first, frame_range.last],
                  "steps": [s.name for s in steps]}
    if gate is not None:
        gate.record_job("started", job_record)
    try:
        result, bad_frames = _process(spec, info, frame_range, steps, shot, batch_size, progress, cancelled, on_start)
    except BaseException as exc:
        if gate is not None:
            gate.record_job("failed", {**job_record, "error": str(exc) or type(exc).__name__})
        raise
    grant_ids = gate.grant_ids_used() if gate is not None else []
    ledger_head = gate.record_job("finished", {**job_record, "grant_ids": grant_ids}) if gate is not None else None
    backends = {s.name: type(s).__name__ for s in steps}
    provenance = None
    if config.output.provenance and not info.is_sequence and not Path(spec.output).name.count("%"):
        identity_hashes = gate.identity.model_hashes if gate is not None else {}
        provenance = str(_write_provenance(spec, info, frame_range, steps, backends, grant_ids, ledger_head, device,
                                           identity_hashes))
    return JobResult(
        output=spec.output, matte=spec.matte, frame_range=frame_range, frames=result.frames, seconds=result.seconds,
        bad_frames=bad_frames, device=device, batch_size=batch_size, steps=[s.name for s in steps],
        backends=backends, grant_ids=grant_ids, provenance=provenance,
    )


def _open_gate(config: PipelineConfig):
    from vfx.consent.gate import GateConfig, open_gate

    consent = config.consent
    identity = None if consent.identity_backend == "auto" else consent.identity_backend
    return open_gate(consent.db, consent.project, consent.policy,
                     GateConfig(identity=identity, allow_noncommercial=consent.allow_noncommercial))


def _process(spec: JobSpec, info: VideoInfo, frame_range: FrameRange, steps: list[Step], shot: ShotState,
             batch_size: int, progress, cancelled, on_start):
    config = spec.config
    strict = config.output.on_bad_frames == "fail"
    for step in steps:
        prepare = getattr(step, "prepare", None)
        if prepare is not None:
            prepare(shot, lambda first, last: FrameReader(info, FrameRange(first, last), strict=strict).frames())
    if on_start is not None:
        on_start(len(frame_range))
    reader = FrameReader(info, frame_range, strict=strict)
    new_audio = next((s.audio_path for s in steps if getattr(s, "audio_path", None)), None)
    sinks: list[Sink] = []
    try:
        sinks.append(FrameWriter(spec.output, info, frame_range, keep_audio=config.output.keep_audio,
                                 crf=config.output.crf, preset=config.output.preset,
                                 with_alpha=spec.output.lower().endswith(".exr"), audio_path=new_audio))
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
    return result, reader.bad_frames


def _write_provenance(spec: JobSpec, info: VideoInfo, frame_range: FrameRange, steps: list[Step],
                      backends: dict[str, str], grant_ids: list[str], ledger_head: str | None, device: str,
                      identity_hashes: dict[str, str]) -> Path:
    from vfx.provenance import write_provenance

    config = spec.config
    inputs = [info.path] + [p for p in (config.restyle.style_image, config.face.lipsync) if p]
    model_hashes: dict[str, str] = dict(identity_hashes)
    for step in steps:
        model_hashes.update(getattr(step, "model_hashes", {}) or {})
    described = [{"name": s.name, "backend": type(s).__name__} for s in steps]
    described.insert(0, {"name": "decode", "frames": [frame_range.first, frame_range.last], "device": device})
    return write_provenance(spec.output, inputs, described, backends, model_hashes, grant_ids, ledger_head)
