"""One live stream over a WebSocket: bounded queue, oldest frames dropped first, replies in order.

Protocol. Client -> server: first a JSON text message with the settings (StreamOptions: a
PipelineConfig as ``config``, or the ``subject``/``style`` shortcuts), then one binary message
per JPEG frame, then ``{"type": "end"}``. Server -> client: ``{"type": "ready"}``, then per
processed frame a binary message = 4-byte big-endian header length, a JSON header (seq,
latency_ms, dropped so far, batch size, faces) and the JPEG (the edited frame, or the matte
when nothing changes pixels); a text message ``{"type": "rejected", ...}`` for a frame that is
too big, declares too many pixels, or is not a usable JPEG; finally ``{"type": "summary",
received, processed, dropped, rejected, ended, grant_ids}``.
"""
from __future__ import annotations

import asyncio
import json
import struct
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from fastapi import WebSocket, WebSocketDisconnect
from pydantic import BaseModel, ConfigDict, Field

from serving.capabilities import FrameRefused, FrameRequest
from serving.gates import check_config
from serving.jpeg import check_jpeg
from serving.metrics import BATCH_SIZE, STREAM_FRAMES, STREAM_LATENCY, STREAM_QUEUE
from serving.settings import StreamSettings
from vfx.config import PipelineConfig
from vfx.errors import VfxError
from vfx.segment import parse_subject


class StreamOptions(BaseModel):
    """A stream's settings: a PipelineConfig (``config``, the same as a job's), or the shortcuts
    ``subject``/``style``; ``faces`` also returns face boxes; ``batched`` false sends frames one by one."""

    model_config = ConfigDict(extra="forbid")
    subject: Literal["person"] | None = "person"
    style: str | None = None
    config: dict[str, Any] | None = None
    faces: bool = False
    batched: bool = True
    fps: float = Field(25.0, gt=0, le=240, description="the stream's frame rate (temporal smoothing, lip-sync)")

    def pipeline_config(self) -> PipelineConfig:
        if self.config is not None:
            if {"subject", "style"} & self.model_fields_set:
                raise ValueError("give either config or the subject/style shortcuts, not both")
            return PipelineConfig.model_validate(self.config)
        return PipelineConfig.model_validate({"segment": {"subject": [self.subject] if self.subject else []},
                                              "restyle": {"style": self.style}})


def stream_config_problem(config: PipelineConfig) -> str | None:
    """Why a stream cannot run this config, checked before any frame: the service's checks and
    the registry's plan (no weights are loaded)."""
    if config.consent.db is not None:
        return "consent.db: the service uses its own consent store; do not name one"
    try:
        if parse_subject(config.segment.subject).kind == "prompt":
            return "a prompted subject (box/points on a key frame) needs the whole shot; submit a job"
        check_config(config)
    except VfxError as exc:
        return str(exc)
    return None


@dataclass
class Waiting:
    seq: int
    jpeg: bytes
    received: float


@dataclass
class StreamCounts:
    received: int = 0
    processed: int = 0
    dropped: int = 0
    rejected: int = 0
    batches: dict[str, int] = field(default_factory=dict)


def frame_message(header: dict[str, Any], jpeg: bytes) -> bytes:
    head = json.dumps(header).encode()
    return struct.pack(">I", len(head)) + head + jpeg


def parse_frame_message(data: bytes) -> tuple[dict[str, Any], bytes]:
    (length,) = struct.unpack(">I", data[:4])
    return json.loads(data[4:4 + length]), data[4 + length:]


class StreamSession:
    """One stream: frames checked on arrival, queued (oldest dropped), processed by the Frames
    deployment with at most ``max_inflight`` in flight, replied to in order."""

    def __init__(self, websocket: WebSocket, options: StreamOptions, config: PipelineConfig,
                 settings: StreamSettings, frames: Any):
        self.ws = websocket
        self.options = options
        self.config_json = config.model_dump_json()
        self.settings = settings
        self.frames = frames
        self.stream_id = uuid.uuid4().hex
        self.waiting: deque[Waiting] = deque()
        self.wake = asyncio.Event()
        self.ended = False
        self.end_reason = "end"
        self.counts = StreamCounts()
        self.inflight: asyncio.Queue = asyncio.Queue(maxsize=settings.max_inflight)
        self.sending = asyncio.Lock()
        self.deadline = time.monotonic() + settings.max_stream_seconds

    async def run(self) -> StreamCounts:
        tasks = [asyncio.create_task(self._receive()), asyncio.create_task(self._dispatch()),
                 asyncio.create_task(self._send())]
        try:
            await asyncio.gather(tasks[1], tasks[2])
        finally:
            for task in tasks:
                task.cancel()
            STREAM_QUEUE.dec(len(self.waiting))
        return self.counts

    async def finish(self) -> dict[str, Any]:
        """Close the stream's steps on the Frames deployment; the grants its face edits used."""
        return await self.frames.finish.remote(self.stream_id)

    async def _receive(self) -> None:
        try:
            while not self.ended:
                remaining = self.deadline - time.monotonic()
                if remaining <= 0:
                    self.end_reason = f"duration limit of {self.settings.max_stream_seconds:g} s"
                    break
                timeout = min(self.settings.idle_timeout_s, remaining)
                try:
                    message = await asyncio.wait_for(self.ws.receive(), timeout=timeout)
                except asyncio.TimeoutError:
                    if timeout >= self.settings.idle_timeout_s:
                        self.end_reason = f"idle for {self.settings.idle_timeout_s:g} s"
                        break
                    continue  # the wait was cut short by the duration cap (the loop's clock may fire a little early)
                if message["type"] == "websocket.disconnect":
                    self.end_reason = "disconnected"
                    break
                data = message.get("bytes")
                if data is not None:
                    await self._enqueue(data)
                elif message.get("text") and json.loads(message["text"]).get("type") == "end":
                    break
        except (WebSocketDisconnect, json.JSONDecodeError, AttributeError) as exc:
            self.end_reason = f"client error: {type(exc).__name__}"
        finally:
            self.ended = True
            self.wake.set()

    async def _enqueue(self, data: bytes) -> None:
        """Size and declared dimensions are checked here, before the frame is queued or decoded."""
        seq = self.counts.received
        self.counts.received += 1
        try:
            check_jpeg(data, self.settings.max_frame_bytes, self.settings.max_width, self.settings.max_height)
        except ValueError as exc:
            await self._reject(seq, str(exc))
            return
        if len(self.waiting) >= self.settings.queue_frames:
            self.waiting.popleft()
            self.counts.dropped += 1
            STREAM_FRAMES.labels("dropped").inc()
            STREAM_QUEUE.dec()
        self.waiting.append(Waiting(seq, data, time.perf_counter()))
        STREAM_QUEUE.inc()
        self.wake.set()

    async def _reject(self, seq: int, reason: str) -> None:
        self.counts.rejected += 1
        STREAM_FRAMES.labels("rejected").inc()
        async with self.sending:
            await self.ws.send_text(json.dumps({"type": "rejected", "seq": seq, "reason": reason}))

    async def _dispatch(self) -> None:
        while True:
            if not self.waiting:
                if self.ended:
                    break
                self.wake.clear()
                await self.wake.wait()
                continue
            frame = self.waiting.popleft()
            STREAM_QUEUE.dec()
            await self.inflight.put((frame, asyncio.create_task(self._process(frame))))
        await self.inflight.put(None)

    async def _send(self) -> None:
        while (item := await self.inflight.get()) is not None:
            frame, task = item
            try:
                header, jpeg = await task
            except ValueError as exc:
                await self._reject(frame.seq, str(exc))
                continue
            latency = time.perf_counter() - frame.received
            STREAM_LATENCY.observe(latency)
            STREAM_FRAMES.labels("processed").inc()
            self.counts.processed += 1
            header.update(seq=frame.seq, latency_ms=round(latency * 1000, 1), dropped=self.counts.dropped)
            async with self.sending:
                await self.ws.send_bytes(frame_message(header, jpeg))

    async def _process(self, frame: Waiting) -> tuple[dict[str, Any], bytes]:
        request = FrameRequest(stream_id=self.stream_id, seq=frame.seq, jpeg=frame.jpeg, config_json=self.config_json,
                               faces=self.options.faces, fps=self.options.fps)
        method = self.frames.process if self.options.batched else self.frames.process_one
        result = await method.remote(request)
        if isinstance(result, FrameRefused):
            raise ValueError(result.reason)
        BATCH_SIZE.labels("Frames").observe(result.batch)
        header: dict[str, Any] = {"batch": result.batch}
        if result.faces is not None:
            header["faces"] = result.faces
        return header, result.jpeg
