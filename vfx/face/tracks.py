"""Faces linked into tracks across frames and batches, with One-Euro landmark smoothing.

Tracking state lives in ``shot.steps["faces"]`` so one detector step serves any number of shots.
A face re-acquired after a gap, or jumping far between frames (a cut), starts a new track; a track
seen with low detector confidence becomes uncertain (its ``epoch`` changes). Identity and consent
are decided for every new track and re-decided whenever its epoch changes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from vfx.errors import VfxError
from vfx.face.decisions import TrackConsent
from vfx.face.detect import DetectedFace, FaceDetector, box_iou, face_scale
from vfx.frames import Face, FrameBatch, ShotState, Step


class OneEuro:
    """One-Euro filter (Casiez et al. 2012) over an array of points, in units of the face size.

    Slow motion is smoothed hard (removes detector jitter), fast motion passes with little lag.
    """

    def __init__(self, min_cutoff: float = 1.2, beta: float = 0.6, d_cutoff: float = 1.0):
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.value: np.ndarray | None = None
        self.speed: np.ndarray | None = None

    @staticmethod
    def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
        tau = 1.0 / (2 * np.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def __call__(self, x: np.ndarray, dt: float, scale: float) -> np.ndarray:
        if self.value is None:
            self.value, self.speed = x.copy(), np.zeros_like(x)
            return x
        speed = (x - self.value) / dt / max(scale, 1e-3)
        a_d = self._alpha(self.d_cutoff, dt)
        self.speed = a_d * speed + (1 - a_d) * self.speed
        cutoff = self.min_cutoff + self.beta * np.linalg.norm(self.speed, axis=-1, keepdims=True)
        a = self._alpha(cutoff, dt)
        self.value = a * x + (1 - a) * self.value
        return self.value.astype(np.float32)


@dataclass
class Track:
    id: int
    box: tuple[float, float, float, float]
    last_index: int
    first_index: int
    filter: OneEuro = field(default_factory=OneEuro)
    epoch: int = 0  # bumped whenever the track becomes uncertain; consumers re-decide on change
    frames_seen: int = 0
    low_confidence: bool = False
    score: float = 1.0  # the last detection's score


@dataclass
class TrackerConfig:
    min_iou: float = 0.25
    max_gap: int = 3  # frames a track may go unseen before it ends; re-acquired faces start a new track
    jump: float = 1.0  # centre motion between frames, in eye distances, that ends a track
    resize: float = 1.35  # box width ratio between frames that counts as a jump (a cut or a zoom)
    low_score: float = 0.6


class FaceTracks:
    """Assigns track ids to each frame's detections, in frame order, across batches."""

    def __init__(self, config: TrackerConfig | None = None):
        self.config = config or TrackerConfig()
        self.tracks: dict[int, Track] = {}  # every track of the shot, ended ones included
        self.next_id = 0

    def update(self, index: int, detections: list[DetectedFace], fps: float) -> list[Face]:
        live = [t for t in self.tracks.values() if 0 < index - t.last_index <= self.config.max_gap]
        pairs = self._match(live, detections)
        faces = []
        for d, det in enumerate(detections):
            track = pairs.get(d)
            if track is None:
                track = Track(self.next_id, det.box, index, index)
                self.tracks[track.id] = track
                self.next_id += 1
            faces.append(self._advance(track, det, index, fps))
        return faces

    def _match(self, live: list[Track], detections: list[DetectedFace]) -> dict[int, Track]:
        if not live or not detections:
            return {}
        iou = np.array([[box_iou(t.box, d.box) if not self._jumped(t, d) else 0.0 for t in live] for d in detections])
        rows, cols = linear_sum_assignment(-iou)
        return {r: live[c] for r, c in zip(rows, cols) if iou[r, c] >= self.config.min_iou}

    def _jumped(self, track: Track, det: DetectedFace) -> bool:
        """A big move or size change between frames is a cut or a different face: start a new track."""
        scale = face_scale(det.landmarks) if len(det.landmarks) else det.box[2] / 2
        moved = np.hypot(det.box[0] + det.box[2] / 2 - track.box[0] - track.box[2] / 2,
                         det.box[1] + det.box[3] / 2 - track.box[1] - track.box[3] / 2)
        resized = max(det.box[2], track.box[2]) / max(min(det.box[2], track.box[2]), 1.0)
        return moved > self.config.jump * scale or resized > self.config.resize

    def _advance(self, track: Track, det: DetectedFace, index: int, fps: float) -> Face:
        if len(det.landmarks):
            low = det.score < self.config.low_score
            if low and not track.low_confidence:
                track.epoch += 1
            track.low_confidence = low
            dt = max(index - track.last_index, 1) / fps
            landmarks = track.filter(det.landmarks, dt, face_scale(det.landmarks))
        else:
            landmarks = det.landmarks
        track.box, track.last_index, track.score = det.box, index, det.score
        track.frames_seen += 1
        face = Face(box=det.box, landmarks=landmarks, track_id=track.id)
        if det.skip_reason:
            face.refused_ops["detect"] = det.skip_reason
        return face


@dataclass
class FaceState:
    """What the detection step remembers about one shot: its tracks and each operation's consent."""

    tracks: FaceTracks
    consent: dict[str, TrackConsent]


class DetectFaces(Step):
    """Step: finds, tracks and consent-decides the faces of each batch into ``batch.faces``.

    The only step that detects faces or asks the gate about them; the likeness steps after it only
    read ``batch.faces`` (``allowed_ops``/``refused_ops`` per operation). Its memory of a shot lives in
    ``shot.steps["faces"]`` and nothing else touches it, so no state is shared between stage threads.
    A live track that no detector finds in a frame (one detector blinking on a grainy frame) is
    looked for again with face mesh around its last box before the track is given up.
    """

    name = "faces"

    def __init__(self, detector: FaceDetector | None = None, gate: Any | None = None, operations: tuple[str, ...] = ()):
        if operations and gate is None:
            raise VfxError(f"face edits ({', '.join(operations)}) run only through the consent gate (--project)")
        self.detector = detector or FaceDetector()
        self.gate = gate
        self.operations = tuple(operations)

    def __call__(self, batch: FrameBatch, shot: ShotState) -> FrameBatch:
        state = self.state(shot)
        found = self.detector.detect_batch(batch.originals)
        faces = []
        for image, index, detections in zip(batch.originals, batch.indices.tolist(), found):
            detections = detections + self._carried(state.tracks, image, int(index), detections)
            faces.append(state.tracks.update(int(index), detections, float(shot.fps)))
        batch.faces = faces
        for consent in state.consent.values():
            consent.decide(self.gate, batch, state.tracks, shot)
        return batch

    def _carried(self, tracks: FaceTracks, image: np.ndarray, index: int, found: list[DetectedFace]) -> list[DetectedFace]:
        carried = []
        for track in tracks.tracks.values():
            if not 0 < index - track.last_index <= tracks.config.max_gap or not track.frames_seen:
                continue
            if any(len(d.landmarks) and box_iou(track.box, d.box) >= tracks.config.min_iou for d in found):
                continue
            face = self.detector.landmarks(image, track.box, track.score, ("track",))
            if len(face.landmarks) and box_iou(face.box, track.box) >= 0.4:
                carried.append(face)
        return carried

    def state(self, shot: ShotState) -> FaceState:
        return shot.steps.setdefault(self.name, FaceState(FaceTracks(), {op: TrackConsent(op) for op in self.operations}))
