"""One shot, end to end: the function the command line and the service both call."""
from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vfx import registry
from vfx.config import PipelineConfig
from vfx.devices import default_batch_size, resolve_device
from vfx.errors import VfxError
from vfx.frames import ShotState, Step
from vfx.pipeline import Pipeline, Sink
from vfx.registry import Plan
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
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)  # step name -> what it did (face edits)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0


# The order steps run in: segment first (it reads the untouched frames), then face detection and the
# consent-gated face edits, then the restyle, which composites the (possibly edited) subject over
# the new surroundings. Identity is not a step: the consent gate embeds faces with it.
STEP_ORDER = ("segment", "face_detect", "rejuvenate", "lipsync", "restyle")


def plan_steps(config: PipelineConfig, device: str) -> Plan:
    """Choose a backend for every capability the config needs, loading no weights."""
    return registry.plan(config, device)


def build_steps(config: PipelineConfig, device: str, gate: Any | None = None, plan: Plan | None = None) -> list[Step]:
    """Build (load the weights of) every step of the plan, in ``STEP_ORDER``, each as its pipeline stages."""
    plan = plan or plan_steps(config, device)
    return [stage for capability in STEP_ORDER if (choice := plan.get(capability)) is not None
            for stage in registry.build(choice, config, device, gate).stages()]


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


def check_job(spec: JobSpec) -> Plan:
    """Everything that can be refused before a frame is decoded or a weight loaded: the input, the
    range, the outputs, and a backend for every capability the config needs."""
    plan(spec)
    return plan_steps(spec.config, resolve_device(spec.config.device))


def run_job(spec: JobSpec, progress: Callable[[int], None] | None = None,
            cancelled: Callable[[], bool] | None = None, on_start: Callable[[int], None] | None = None,
            gate: Any | None = None) -> JobResult:
    """Run one shot. ``gate``: an open consent gate (the service passes its own); by default face
    edits open the one the config names."""
    info, frame_range = plan(spec)
    config = spec.config
    device = resolve_device(config.device)
    job_plan = plan_steps(config, device)
    if gate is None and needs_consent(config):
        gate = open_consent_gate(config)
    steps = build_steps(config, device, gate, job_plan)
    batch_size = config.batch_size or default_batch_size(device)
    shot = ShotState(width=info.width, height=info.height, fps=float(info.fps), first_frame=frame_range.first,
                     last_frame=frame_range.last, source_path=info.path, project=config.consent.project)
    job_record = {"input": info.path, "output": spec.output, "frames": [frame_range.first, frame_range.last],
                  "steps": [s.name for s in steps], "plan": job_plan.describe()}
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
    provenance = None
    if config.output.provenance and not info.is_sequence and not Path(spec.output).name.count("%"):
        provenance = str(write_job_provenance(spec.output, info.path, config, frame_range, steps, job_plan,
                                              grant_ids, ledger_head, gate))
    return JobResult(
        output=spec.output, matte=spec.matte, frame_range=frame_range, frames=result.frames, seconds=result.seconds,
        bad_frames=bad_frames, device=device, batch_size=batch_size, steps=[s.name for s in steps],
        backends=step_backends(steps), grant_ids=grant_ids, provenance=provenance, reports=result.reports,
    )


def step_backends(steps: list[Step]) -> dict[str, str]:
    return {s.name: type(s).__name__ for s in steps}


def open_consent_gate(config: PipelineConfig):
    """The consent gate the config's consent section names (database, project, policy, identity)."""
    from vfx.consent.gate import GateConfig, open_gate

    consent = config.consent
    identity = None if consent.identity_backend == "auto" else consent.identity_backend
    return open_gate(consent.db, consent.project, consent.policy,
                     GateConfig(identity=identity, allow_noncommercial=consent.allow_noncommercial))


def _process(spec: JobSpec, info: VideoInfo, frame_range: FrameRange, steps: list[Step], shot: ShotState,
             batch_size: int, progress, cancelled, on_start):
    config = spec.config
    strict = config.output.on_bad_frames == "fail"
    if on_start is not None:
        on_start(len(frame_range))
    reader = FrameReader(info, frame_range, strict=strict)
    new_audio = next((s.audio_path for s in steps if s.audio_path), None)
    sinks: list[Sink] = []
    try:
        sinks.append(FrameWriter(spec.output, info, frame_range, keep_audio=config.output.keep_audio,
                                 crf=config.output.crf, preset=config.output.preset,
                                 with_alpha=spec.output.lower().endswith(".exr"), audio_path=new_audio,
                                 lossless_rgb=config.output.lossless_rgb))
        if spec.matte:
            sinks.append(MatteWriter(spec.matte, info, frame_range, lossless_rgb=config.output.lossless_rgb))
        result = Pipeline(steps, queue_depth=config.queue_depth)(
            reader.batches(batch_size), shot, sinks, progress, cancelled,
            frames=lambda first, last: FrameReader(info, FrameRange(first, last), strict=strict).frames())
    except BaseException:
        for sink in sinks:
            sink.abort()
        raise
    return result, reader.bad_frames


def write_job_provenance(output: str, input_path: str, config: PipelineConfig, frame_range: FrameRange,
                         steps: list[Step], job_plan: Plan, grant_ids: list[str], ledger_head: str | None,
                         gate: Any | None) -> Path:
    """Sign what was done to ``output``: inputs, steps with their backends, the sha256 of every
    model whose weights shaped a pixel (each step's and the consent gate's identity model), and
    the likeness edits the gate allowed (grant, frames, face regions)."""
    from vfx.provenance import write_provenance

    inputs = [input_path] + [p for p in (config.restyle.style_image, config.face.lipsync) if p]
    model_hashes: dict[str, str] = dict(gate.identity.model_hashes) if gate is not None else {}
    for step in steps:
        model_hashes.update(step.model_hashes)
    described = [{"name": "decode", "frames": [frame_range.first, frame_range.last], "device": job_plan.device}]
    described += [{"name": s.name, "backend": type(s).__name__} for s in steps]
    backends = {**step_backends(steps), **{f"plan.{k}": v for k, v in job_plan.describe().items()}}
    consent = gate.likeness_edits() if gate is not None else []
    return write_provenance(output, inputs, described, backends, model_hashes, grant_ids, ledger_head, consent=consent)
