"""Consent per face track: decided once per track, re-decided when the track is uncertain,
re-checked every batch so a revocation stops further edits. The detection step owns this memory;
what was actually edited is recorded by the likeness steps (``vfx.face.report``).

The identity embedding of a track is the mean over its first frames in the batch where it is
decided; a face without an allowed grant gets ``refused_ops[operation]`` and must stay untouched.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from vfx.frames import Face, FrameBatch, ShotState

if TYPE_CHECKING:
    from vfx.face.tracks import FaceTracks

EMBED_FRAMES = 3  # frames averaged into a track's identity embedding


@dataclass
class TrackDecision:
    epoch: int
    embedding: np.ndarray
    allowed: bool
    subject: str | None
    grant_id: str | None
    reason: str


class TrackConsent:
    """Per-shot consent memory of one operation, held by the detection step's shot state."""

    def __init__(self, operation: str):
        self.operation = operation
        self.decisions: dict[int, TrackDecision] = {}

    def decide(self, gate: Any, batch: FrameBatch, tracks: FaceTracks, shot: ShotState) -> None:
        """Fill ``allowed_ops``/``refused_ops`` of every face in ``batch`` for this operation."""
        assert batch.faces is not None
        key = shot_key(shot)
        fresh = self._decide_uncertain(gate, batch, tracks, key)
        for track_id, decision in self.decisions.items():
            first = _first_frame(batch, track_id)
            if track_id not in fresh and first is not None:
                self._recheck(gate, decision, first, key)
        for faces in batch.faces:
            for face in faces:
                self._apply(face)

    def _decide_uncertain(self, gate: Any, batch: FrameBatch, tracks: FaceTracks, key: str) -> set[int]:
        samples: dict[int, list[np.ndarray]] = {}
        first: dict[int, int] = {}
        for i, faces in enumerate(batch.faces):
            for face in faces:
                known = self.decisions.get(face.track_id)
                epoch = tracks.tracks[face.track_id].epoch
                if "detect" in face.refused_ops or (known is not None and known.epoch == epoch):
                    continue
                first.setdefault(face.track_id, int(batch.indices[i]))
                taken = samples.setdefault(face.track_id, [])
                if len(taken) < EMBED_FRAMES:
                    taken.append(gate.embed(batch.originals[i], [identity_box(face)])[0])
        for track_id, embeddings in samples.items():
            mean = np.mean(embeddings, axis=0).astype(np.float32)
            verdict = gate.check(mean, self.operation, frame=first[track_id], shot=key)
            self.decisions[track_id] = TrackDecision(
                tracks.tracks[track_id].epoch, mean, bool(verdict.allowed), verdict.subject, verdict.grant_id, verdict.reason)
        return set(samples)

    def _recheck(self, gate: Any, decision: TrackDecision, frame: int, key: str) -> None:
        verdict = gate.check(decision.embedding, self.operation, frame=frame, shot=key)
        decision.allowed, decision.grant_id, decision.reason = bool(verdict.allowed), verdict.grant_id, verdict.reason
        decision.subject = verdict.subject or decision.subject

    def _apply(self, face: Face) -> None:
        decision = self.decisions.get(face.track_id)
        if "detect" in face.refused_ops:
            face.refused_ops[self.operation] = face.refused_ops["detect"]
        elif decision is None:
            face.refused_ops[self.operation] = "no identity decision"
        else:
            face.subject = decision.subject or face.subject
            face.embedding = decision.embedding
            if decision.allowed and decision.grant_id:
                face.allowed_ops[self.operation] = decision.grant_id
            else:
                face.refused_ops[self.operation] = decision.reason or "no grant"


def _first_frame(batch: FrameBatch, track_id: int) -> int | None:
    for index, faces in zip(batch.indices.tolist(), batch.faces):
        if any(face.track_id == track_id for face in faces):
            return index
    return None


def shot_key(shot: ShotState) -> str:
    """How the gate's per-shot tally and the ledger name this shot."""
    return f"{shot.source_path}#{shot.first_frame}-{shot.last_frame}"


def identity_box(face: Face) -> tuple[float, float, float, float]:
    """dlib's encoder expects its detector's square boxes, brows to chin; the mesh box starts at the hairline."""
    x, y, w, h = face.box
    side = max(w, 0.89 * h)
    return (x + w / 2 - side / 2, y + 0.11 * h, side, side)
