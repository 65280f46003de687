"""Model deployments for live frames, one per capability, each grouping frames with @serve.batch.

Frames of many streams arrive in one batch; each stream keeps its own ShotState (matte
smoothing, restyle stabilisation) in a bounded LRU on the replica. Every method has a batched
and an unbatched (per-frame) form, so the benchmark can compare the two in one run.
"""
from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from ray import serve

from serving.settings import StreamSettings
from vfx.frames import FrameBatch, ShotState
from vfx.parallel import cpu_workers, map_frames
from vfx.restyle.classic import ClassicRestyle
from vfx.segment.person import PersonSegmenter

JPEG_QUALITY = 90


@dataclass
class FrameRequest:
    stream_id: str
    seq: int
    jpeg: bytes
    style: str | None = None
    matte: np.ndarray | None = None  # uint8 [H, W], 255 = subject


def decode_jpeg(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("not a decodable JPEG")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def encode_jpeg(rgb: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return data.tobytes()


class StreamStates:
    """Per-stream ShotState, least recently used dropped first."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.states: OrderedDict[str, ShotState] = OrderedDict()
        self.lock = threading.Lock()  # unbatched calls run in several threads at once

    def get(self, stream_id: str, height: int, width: int) -> ShotState:
        with self.lock:
            return self._get(stream_id, height, width)

    def _get(self, stream_id: str, height: int, width: int) -> ShotState:
        state = self.states.get(stream_id)
        if state is None or (state.height, state.width) != (height, width):
            state = ShotState(width=width, height=height, fps=0.0, first_frame=0, last_frame=2**31 - 1)
        self.states[stream_id] = state
        self.states.move_to_end(stream_id)
        while len(self.states) > self.capacity:
            self.states.popitem(last=False)
        return state


def by_stream(requests: list[FrameRequest]) -> dict[tuple[str, Any], list[int]]:
    """Positions of the requests of each (stream, style), in frame order."""
    groups: dict[tuple[str, Any], list[int]] = {}
    for position, request in enumerate(requests):
        groups.setdefault((request.stream_id, request.style), []).append(position)
    for positions in groups.values():
        positions.sort(key=lambda p: requests[p].seq)
    return groups


def frame_batch(images: list[np.ndarray], seqs: list[int]) -> FrameBatch:
    indices = np.asarray(seqs, dtype=np.int64)
    return FrameBatch(frames=np.stack(images), indices=indices, timestamps=indices.astype(np.float64))


class _Batched:
    """Shared shape of a capability: ``process`` (batched) and ``process_one`` (one frame per call)."""

    def __init__(self, stream: dict[str, Any]):
        settings = StreamSettings.model_validate(stream)
        self.states = StreamStates(settings.max_streams_state)
        self.process.set_max_batch_size(settings.max_batch_size)
        self.process.set_batch_wait_timeout_s(settings.batch_wait_timeout_s)
        # Streams of one batch are independent: process them side by side (each step call
        # already spreads its own frames over vfx's frame pool, which is a different pool).
        self.streams_pool = ThreadPoolExecutor(max_workers=cpu_workers(), thread_name_prefix="vfx-streams")

    def run(self, requests: list[FrameRequest]) -> list[Any]:  # each capability defines its own
        raise TypeError(f"{type(self).__name__} does not define run()")

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def process(self, requests: list[FrameRequest]) -> list[tuple[Any, int]]:
        results = await asyncio.to_thread(self.run, requests)
        return [(result, len(requests)) for result in results]

    async def process_one(self, request: FrameRequest) -> tuple[Any, int]:
        return (await asyncio.to_thread(self.run, [request]))[0], 1


class Segment(_Batched):
    """Person matte (mediapipe), returned as uint8 [H, W]."""

    def __init__(self, stream: dict[str, Any]):
        super().__init__(stream)
        self.segmenter = PersonSegmenter()

    def run(self, requests: list[FrameRequest]) -> list[Any]:
        images = map_frames(decode_jpeg, [r.jpeg for r in requests])
        mattes: list[np.ndarray | None] = [None] * len(requests)
        groups = list(by_stream(requests).items())
        states = [self.states.get(stream_id, *images[positions[0]].shape[:2]) for (stream_id, _), positions in groups]

        def segment(group: int) -> None:
            positions = groups[group][1]
            batch = frame_batch([images[p] for p in positions], [requests[p].seq for p in positions])
            for p, matte in zip(positions, self.segmenter(batch, states[group]).matte):
                mattes[p] = (np.clip(matte, 0, 1) * 255 + 0.5).astype(np.uint8)

        list(self.streams_pool.map(segment, range(len(groups))))
        return mattes


class Restyle(_Batched):
    """Restyled surroundings composited under the subject matte; returns JPEG bytes."""

    def __init__(self, stream: dict[str, Any]):
        super().__init__(stream)
        self.restylers: dict[str, ClassicRestyle] = {}

    def restyler(self, style: str) -> ClassicRestyle:
        if style not in self.restylers:
            self.restylers[style] = ClassicRestyle(style=style)
        return self.restylers[style]

    def run(self, requests: list[FrameRequest]) -> list[Any]:
        images = map_frames(decode_jpeg, [r.jpeg for r in requests])
        out: list[np.ndarray | None] = [None] * len(requests)
        groups = list(by_stream(requests).items())
        states = [self.states.get(f"{stream_id}/{style}", *images[positions[0]].shape[:2])
                  for (stream_id, style), positions in groups]
        restylers = [self.restyler(style) for (_, style), _ in groups]

        def restyle(group: int) -> None:
            positions = groups[group][1]
            batch = frame_batch([images[p] for p in positions], [requests[p].seq for p in positions])
            mattes = [requests[p].matte for p in positions]
            if all(m is not None for m in mattes):
                batch.matte = np.stack(mattes).astype(np.float32) / 255.0
            for p, frame in zip(positions, restylers[group](batch, states[group]).frames):
                out[p] = frame

        list(self.streams_pool.map(restyle, range(len(groups))))
        return map_frames(encode_jpeg, out)


class Face(_Batched):
    """Face boxes (mediapipe); no likeness edits here, those need a consent grant and run in jobs."""

    def __init__(self, stream: dict[str, Any]):
        super().__init__(stream)
        from vfx.face.detect import FaceDetector

        self.detector = FaceDetector()

    def run(self, requests: list[FrameRequest]) -> list[Any]:
        images = map_frames(decode_jpeg, [r.jpeg for r in requests])
        found = map_frames(self.detector.detect, images)
        return [[[round(v, 1) for v in face.box] for face in faces if face.skip_reason is None] for faces in found]

