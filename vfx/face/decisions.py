"""Consent per face track: decided once per track, re-decided when the track is uncertain,
re-checked every batch so a revocation stops further edits, summarised once per shot.

The identity embedding of a track is the mean over its first frames in the batch where it is
decided; a face without an allowed grant gets ``refused_ops[operation]`` and must stay untouched.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vfx.face.tracks import FaceTracks
from vfx.frames import Face, FrameBatch, ShotState, frame_ranges

EMBED_FRAMES = 3  # frames averaged into a track's identity embedding


@dataclass
class TrackDecision:
    epoch: int
    embedding: np.ndarray
    allowed: bool
    subject: str | None
    grant_id: str | None
    reason: str


@dataclass
class TrackRecord:
    """What happened to one track in one shot, for the ledger summary."""

    subject: str | None = None
    grant_ids: set[str] = field(default_factory=set)
    edited: list[int] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)  # frame -> reason


class TrackConsent:
    """Per-shot consent memory of one operation; lives in ``shot.steps[f"{operation}.consent"]``."""

    def __init__(self, operation: str):
        self.operation = operation
        self.decisions: dict[int, TrackDecision] = {}
        self.records: dict[int, TrackRecord] = {}
        self.summarised = False

    def decide(self, gate: Any, batch: FrameBatch, tracks: FaceTracks, shot: ShotState) -> None:
        """Fill ``allowed_ops``/``refused_ops`` of every face in ``batch`` for this operation."""
        assert batch.faces is not None
        key = shot_key(shot)
        fresh = self._decide_uncertain(gate, batch, tracks, key)
        for track_id, decision in self.decisions.items():
            first = _first_frame(batch, track_id)
            if track_id not in fresh and first is not None:
                self._recheck(gate, decision, first, key)
        for index, faces in zip(batch.indices.tolist(), batch.faces):
            for face in faces:
                self._apply(face, index)
                if self.operation in face.allowed_ops and hasattr(gate, "record_edit"):
                    gate.record_edit(face, self.operation, index)  # frames and region, for the C2PA manifest

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

    def _apply(self, face: Face, index: int) -> None:
        record = self.records.setdefault(face.track_id, TrackRecord())
        decision = self.decisions.get(face.track_id)
        if "detect" in face.refused_ops:
            face.refused_ops[self.operation] = face.refused_ops["detect"]
        elif decision is None:
            face.refused_ops[self.operation] = "no identity decision"
        else:
            face.subject = decision.subject
            face.embedding = decision.embedding
            record.subject = decision.subject or record.subject
            if decision.allowed and decision.grant_id:
                face.allowed_ops[self.operation] = decision.grant_id
                record.grant_ids.add(decision.grant_id)
            else:
                face.refused_ops[self.operation] = decision.reason or "no grant"
        if self.operation in face.allowed_ops:
            record.edited.append(index)
        else:
            record.refused[index] = face.refused_ops[self.operation]

    def summary(self, shot: ShotState, step: str) -> dict[str, Any]:
        """Frame ranges edited and refused per track and per subject, with grant ids."""
        tracks = []
        subjects: dict[str, dict[str, Any]] = {}
        for track_id, rec in sorted(self.records.items()):
            reasons = sorted(set(rec.refused.values()))
            row = {"track": track_id, "subject": rec.subject, "grant_ids": sorted(rec.grant_ids),
                   "edited": frame_ranges(rec.edited), "refused": frame_ranges(list(rec.refused)), "reasons": reasons}
            tracks.append(row)
            agg = subjects.setdefault(rec.subject or "unknown", {"edited": [], "refused": [], "grant_ids": set(), "reasons": set()})
            agg["edited"] += rec.edited
            agg["refused"] += list(rec.refused)
            agg["grant_ids"] |= rec.grant_ids
            agg["reasons"] |= set(reasons)
        return {
            "shot": shot_key(shot), "step": step, "operation": self.operation, "source": shot.source_path, "project": shot.project,
            "frames": [shot.first_frame, shot.last_frame], "tracks": tracks,
            "subjects": {s: {"edited": frame_ranges(a["edited"]), "refused": frame_ranges(a["refused"]),
                             "grant_ids": sorted(a["grant_ids"]), "reasons": sorted(a["reasons"])}
                         for s, a in subjects.items()},
        }


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


def finish_consent(gate: Any, shot: ShotState, step: str, operation: str,
                   extra: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """Append the shot's summary to ``shot.events`` and the gate's ledger, once."""
    consent: TrackConsent | None = shot.steps.get(f"{operation}.consent")
    if consent is None or consent.summarised:
        return None
    summary = {**consent.summary(shot, step), **(extra or {})}
    gate.record_shot(summary)
    shot.events.append(summary)
    consent.summarised = True
    return summary
