"""One live stream over a WebSocket: bounded queue, oldest frames dropped first, replies in order.

Protocol. Client -> server: first a JSON text message with the settings (StreamOptions), then
one binary message per JPEG frame, then ``{"type": "end"}``. Server -> client: ``{"type":
"ready"}``, then per processed frame a binary message = 4-byte big-endian header length, a JSON
header (seq, latency_ms, dropped so far, batch sizes, faces) and the JPEG; a text message
``{"type": "rejected", ...}`` for a frame that is not a usable JPEG; finally ``{"type":
"summary", received, processed, dropped, rejected}``.
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
from pydantic import BaseModel, ConfigDict

import cv2
import numpy as np

from serving.capabilities import FrameRequest
from serving.metrics import BATCH_SIZE, STREAM_FRAMES, STREAM_LATENCY, STREAM_QUEUE
from serving.settings import StreamSettings
from vfx.restyle import STYLES

JPEG_MAGIC = b"\xff\xd8"


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subject: Literal["person"] | None = "person"
    style: str | None = None
    faces: bool = False
    batched: bool = True

    def problem(self) -> str | None:
        if self.style is not None and self.style not in STYLES:
            return f"unknown style {self.style!r}; choose {', '.join(STYLES)}"
        if self.subject is None and self.style is None and not self.faces:
            return "nothing to do: give subject, style and/or faces"
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


def encode_matte(matte: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", matte)
    if not ok:
        raise ValueError("matte encoding failed")
    return data.tobytes()


class StreamSession:
    def __init__(self, websocket: WebSocket, options: StreamOptions, settings: StreamSettings, handles: dict[str, Any]):
        self.ws = websocket
        self.options = options
        self.settings = settings
        self.handles = handles
        self.stream_id = uuid.uuid4().hex
        self.waiting: deque[Waiting] = deque()
        self.wake = asyncio.Event()
        self.ended = False
        self.counts = StreamCounts()
        self.inflight: asyncio.Queue = asyncio.Queue(maxsize=settings.max_inflight)

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

    async def _receive(self) -> None:
        try:
            while not self.ended:
                message = await asyncio.wait_for(self.ws.receive(), timeout=self.settings.idle_timeout_s)
                if message["type"] == "websocket.disconnect":
                    break
                data = message.get("bytes")
                if data is not None:
                    self._enqueue(data)
                elif message.get("text") and json.loads(message["text"]).get("type") == "end":
                    break
        except (asyncio.TimeoutError, WebSocketDisconnect, json.JSONDecodeError):
            pass
        finally:
            self.ended = True
            self.wake.set()

    def _enqueue(self, data: bytes) -> None:
        self.counts.received += 1
        if len(self.waiting) >= self.settings.queue_frames:
            self.waiting.popleft()
            self.counts.dropped += 1
            STREAM_FRAMES.labels("dropped").inc()
            STREAM_QUEUE.dec()
        self.waiting.append(Waiting(self.counts.received - 1, data, time.perf_counter()))
        STREAM_QUEUE.inc()
        self.wake.set()

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
                self.counts.rejected += 1
                STREAM_FRAMES.labels("rejected").inc()
                await self.ws.send_text(json.dumps({"type": "rejected", "seq": frame.seq, "reason": str(exc)}))
                continue
            latency = time.perf_counter() - frame.received
            STREAM_LATENCY.observe(latency)
            STREAM_FRAMES.labels("processed").inc()
            self.counts.processed += 1
            header.update(seq=frame.seq, latency_ms=round(latency * 1000, 1), dropped=self.counts.dropped)
            await self.ws.send_bytes(frame_message(header, jpeg))

    async def _process(self, frame: Waiting) -> tuple[dict[str, Any], bytes]:
        if len(frame.jpeg) > self.settings.max_frame_bytes:
            raise ValueError(f"frame is {len(frame.jpeg)} bytes; the limit is {self.settings.max_frame_bytes}")
        if not frame.jpeg.startswith(JPEG_MAGIC):
            raise ValueError("not a JPEG")
        request = FrameRequest(stream_id=self.stream_id, seq=frame.seq, jpeg=frame.jpeg, style=self.options.style)
        header: dict[str, Any] = {"batch": {}}
        faces = asyncio.create_task(self._call("Face", request)) if self.options.faces else None
        jpeg = frame.jpeg
        if self.options.subject is not None:
            request.matte, header["batch"]["Segment"] = await self._call("Segment", request)
        if self.options.style is not None:
            jpeg, header["batch"]["Restyle"] = await self._call("Restyle", request)
        if self.options.style is None and request.matte is not None:
            jpeg = encode_matte(request.matte)
        if faces is not None:
            header["faces"], header["batch"]["Face"] = await faces
        return header, jpeg

    async def _call(self, name: str, request: FrameRequest) -> tuple[Any, int]:
        handle = self.handles[name]
        method = handle.process if self.options.batched else handle.process_one
        try:
            result, batch = await method.remote(request)
        except Exception as exc:
            cause = getattr(exc, "cause", exc)
            if isinstance(cause, ValueError):
                raise ValueError(str(cause)) from None
            raise
        BATCH_SIZE.labels(name).observe(batch)
        return result, batch
