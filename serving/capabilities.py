"""Live frames through the same steps as `vfx run`: one deployment, its steps built by vfx.

A stream's settings are a PipelineConfig, the same model a job or `vfx run` takes. On a
stream's first frame the replica builds that config's steps with ``vfx.job.build_steps`` (the
registry's choice of backends, in run_job's order) and keeps them, with the stream's ShotState
and consent gate, in a bounded LRU. Face edits go through the server's consent gate: the
server's consent store, the stream's project; a client never names a store.

Frames of many streams arrive together through ``@serve.batch``; each stream's frames of a
batch run through its steps in frame order, streams side by side. Batches overlap
(``max_concurrent_batches``): a CPU backend works frame by frame, so waiting for one batch to
finish before starting the next only idles the cores; a GPU model still gets whole batches.
"""
from __future__ import annotations

import asyncio
import logging
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ray import serve

from serving.gates import gate_for, load_backends
from serving.jpeg import check_jpeg, decode_jpeg, encode_gray_jpeg, encode_jpeg
from serving.priority import render_in_background
from serving.settings import ServeSettings, load_settings
from vfx.config import PipelineConfig
from vfx.devices import resolve_device
from vfx.errors import VfxError
from vfx.frames import FrameBatch, ShotState, Step
from vfx.parallel import cpu_workers, map_frames

log = logging.getLogger("vfx.serving.stream")
MAX_CONCURRENT_BATCHES = 4  # batches of one Frames replica in flight at once


@dataclass
class FrameRequest:
    stream_id: str
    seq: int
    jpeg: bytes
    config_json: str  # the stream's PipelineConfig
    faces: bool = False  # also return the face boxes
    fps: float = 25.0


@dataclass
class FrameRefused:
    """A frame (or a stream's frames) not processed, and why; the stream goes on."""

    reason: str


@dataclass
class FrameResult:
    jpeg: bytes  # the edited frame; the matte when no step changes pixels
    faces: list[list[float]] | None
    batch: int = 1


def changes_pixels(config: PipelineConfig) -> bool:
    return any((config.restyle.style, config.restyle.style_image, config.restyle.prompt,
                config.face.rejuvenate is not None, config.face.lipsync is not None))


@dataclass
class StreamSteps:
    """One stream's steps, shot and gate; ``lock`` keeps its frames one batch at a time."""

    stream_id: str
    config: PipelineConfig
    steps: list[Step]
    shot: ShotState
    gate: Any = None
    last_seq: int = -1
    lock: threading.Lock = field(default_factory=threading.Lock)

    def finish(self) -> dict[str, Any]:
        """Close the stream's shot: each step's finish (consent summaries), and the ledger's job record."""
        self.shot.last_frame = max(self.shot.first_frame, self.last_seq)
        with self.lock:  # a batch still running finishes first
            for step in self.steps:
                step.finish(self.shot)
        if self.gate is None:
            return {"grant_ids": []}
        grant_ids = self.gate.grant_ids_used()
        self.gate.record_job("finished", {"stream": self.stream_id, "frames": [0, self.last_seq],
                                          "steps": [s.name for s in self.steps], "grant_ids": grant_ids})
        return {"grant_ids": grant_ids}


def build_stream_steps(stream_id: str, config: PipelineConfig, faces: bool, size: tuple[int, int], fps: float,
                       consent_db: str | None) -> StreamSteps:
    from vfx.job import build_steps

    device = resolve_device(config.device)
    gate = gate_for(config, consent_db)
    steps = build_steps(config, device, gate)
    if faces and not any(s.name == "faces" for s in steps):
        from vfx.face.scrfd import face_detector
        from vfx.face.tracks import DetectFaces

        # boxes only: detection reads the untouched frames and changes no pixel, so it goes first
        steps.insert(0, DetectFaces(face_detector(config.face.detector, config.face.allow_noncommercial)))
    width, height = size
    shot = ShotState(width=width, height=height, fps=fps, first_frame=0, last_frame=2**31 - 1,
                     source_path=f"stream:{stream_id}", project=config.consent.project)
    if gate is not None:
        gate.record_job("started", {"stream": stream_id, "steps": [s.name for s in steps]})
    log.info("stream steps: %s on %s", ", ".join(f"{s.name}={type(s).__name__}" for s in steps), device,
             extra={"stream_id": stream_id})
    return StreamSteps(stream_id, config, steps, shot, gate)


class StreamStates:
    """Per-stream steps and state, least recently used closed first."""

    def __init__(self, capacity: int, consent_db: str | None):
        self.capacity = capacity
        self.consent_db = consent_db
        self.states: OrderedDict[str, StreamSteps] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, request: FrameRequest, size: tuple[int, int]) -> StreamSteps:
        with self.lock:
            state = self.states.get(request.stream_id)
            if state is not None:
                self.states.move_to_end(request.stream_id)
                return state
        config = PipelineConfig.model_validate_json(request.config_json)
        state = build_stream_steps(request.stream_id, config, request.faces, size, request.fps, self.consent_db)
        with self.lock:
            state = self.states.setdefault(request.stream_id, state)
            evicted = []
            while len(self.states) > self.capacity:
                evicted.append(self.states.popitem(last=False)[1])
        for old in evicted:
            close_quietly(old, "evicted")
        return state

    def pop(self, stream_id: str) -> StreamSteps | None:
        with self.lock:
            return self.states.pop(stream_id, None)


def close_quietly(state: StreamSteps, why: str) -> dict[str, Any]:
    try:
        return state.finish()
    except Exception:
        log.exception("stream %s could not be closed (%s)", state.stream_id, why, extra={"stream_id": state.stream_id})
        return {"grant_ids": [], "error": "closing the stream failed"}


def by_stream(requests: list[FrameRequest]) -> dict[str, list[int]]:
    """Positions of each stream's requests, in frame order."""
    groups: dict[str, list[int]] = {}
    for position, request in enumerate(requests):
        groups.setdefault(request.stream_id, []).append(position)
    for positions in groups.values():
        positions.sort(key=lambda p: requests[p].seq)
    return groups


def face_boxes(batch: FrameBatch, position: int) -> list[list[float]]:
    if batch.faces is None:
        return []
    return [[round(float(v), 1) for v in face.box] for face in batch.faces[position]]


class Frames:
    """The stream model deployment: ``process`` (batched) and ``process_one`` (one frame per call)."""

    def __init__(self, settings: dict[str, Any]):
        self.settings: ServeSettings = load_settings(settings)
        render_in_background(self.settings.render_nice)
        load_backends()
        stream = self.settings.stream
        self.states = StreamStates(stream.max_streams_state, self.settings.consent_db)
        self.process.set_max_batch_size(stream.max_batch_size)
        self.process.set_batch_wait_timeout_s(stream.batch_wait_timeout_s)
        self.streams_pool = ThreadPoolExecutor(max_workers=2 * cpu_workers(), thread_name_prefix="vfx-streams")

    def run(self, requests: list[FrameRequest]) -> list[FrameResult | FrameRefused]:
        """Each request's result, or why its frame was refused (the others go on)."""
        limits = self.settings.stream
        results: list[FrameResult | FrameRefused | None] = [None] * len(requests)
        images: list[np.ndarray | None] = [None] * len(requests)

        def decode(position: int) -> None:
            try:
                check_jpeg(requests[position].jpeg, limits.max_frame_bytes, limits.max_width, limits.max_height)
                images[position] = decode_jpeg(requests[position].jpeg)
            except ValueError as exc:
                results[position] = FrameRefused(str(exc))

        map_frames(decode, range(len(requests)))
        groups = [[p for p in positions if images[p] is not None] for positions in by_stream(requests).values()]
        list(self.streams_pool.map(lambda positions: self._run_stream_safely(requests, images, positions, results),
                                   [g for g in groups if g]))
        return results

    def _run_stream_safely(self, requests: list[FrameRequest], images: list, positions: list[int],
                           results: list) -> None:
        """One stream's failure refuses its frames only, logged with its traceback and stream id."""
        try:
            self._run_stream(requests, images, positions, results)
        except (VfxError, ValueError) as exc:
            refused = FrameRefused(str(exc) or type(exc).__name__)
        except Exception:
            log.exception("stream frames %s failed", [requests[p].seq for p in positions],
                          extra={"stream_id": requests[positions[0]].stream_id})
            refused = FrameRefused("processing failed on the server")
        else:
            return
        for p in positions:
            if results[p] is None:
                results[p] = refused

    def _run_stream(self, requests: list[FrameRequest], images: list, positions: list[int], results: list) -> None:
        first = requests[positions[0]]
        height, width = images[positions[0]].shape[:2]
        same = [p for p in positions if images[p].shape[:2] == (height, width)]
        for p in set(positions) - set(same):
            results[p] = FrameRefused(f"frame is {images[p].shape[1]}x{images[p].shape[0]}; "
                                      f"this stream is {width}x{height}")
        state = self.states.get(first, (width, height))
        if (state.shot.width, state.shot.height) != (width, height):
            for p in same:
                results[p] = FrameRefused(f"frame is {width}x{height}; this stream is "
                                          f"{state.shot.width}x{state.shot.height}")
            return
        indices = np.asarray([requests[p].seq for p in same], dtype=np.int64)
        batch = FrameBatch(frames=np.stack([images[p] for p in same]), indices=indices,
                           timestamps=indices / max(state.shot.fps, 1e-6))
        with state.lock:
            for step in state.steps:
                batch = step(batch, state.shot)
            state.last_seq = max(state.last_seq, int(indices[-1]))
        if changes_pixels(state.config) or batch.matte is None:
            encoded = map_frames(encode_jpeg, list(batch.frames))
        else:
            encoded = map_frames(encode_gray_jpeg, list((np.clip(batch.matte, 0, 1) * 255 + 0.5).astype(np.uint8)))
        for i, p in enumerate(same):
            results[p] = FrameResult(encoded[i], face_boxes(batch, i) if requests[p].faces else None)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01, max_concurrent_batches=MAX_CONCURRENT_BATCHES)
    async def process(self, requests: list[FrameRequest]) -> list[FrameResult | FrameRefused]:
        results = await asyncio.to_thread(self.run, requests)
        for result in results:
            if isinstance(result, FrameResult):
                result.batch = len(requests)
        return results

    async def process_one(self, request: FrameRequest) -> FrameResult | FrameRefused:
        return (await asyncio.to_thread(self.run, [request]))[0]

    async def finish(self, stream_id: str) -> dict[str, Any]:
        """The stream ended: finish its steps and record it with its gate (the grants used)."""
        state = self.states.pop(stream_id)
        if state is None:
            return {"grant_ids": []}
        return await asyncio.to_thread(close_quietly, state, "ended")
