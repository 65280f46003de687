"""The consent gate: every likeness-changing step asks it, face by face, before touching a face.

A face is allowed an operation only if it matches exactly one enrolled subject (distance under
the threshold, with a margin over the runner-up; faces are embedded with the identity backend the
subjects were enrolled with, and subjects of different backends cannot share a gate) and that subject holds a grant for this project
and operation that is valid now, signed by a trusted key that was an authority of the subject
when the grant entered the ledger, bound to the subject's signed reference faces, and not revoked
by an authority. All of it is read from the signed documents in the hash-chained ledger; new
entries are read at most every ``revocation_interval_s`` seconds, so a grant revoked mid-job
stops further edits, and a ledger that does not verify refuses every edit.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

import numpy as np
from vfx.consent import ledger
from vfx.consent.grants import grant_problem
from vfx.consent.home import trusted_keys
from vfx.consent.state import ConsentState
from vfx.consent.store import GENESIS_HASH, ConsentStore
from vfx.consent.subjects import Subject, load_subjects
from vfx.errors import VfxError
from vfx.face.identity import Box
from vfx.face.identity_backends import IdentityBackend, backend_of_stored, identity_backend
from vfx.frames import Face, frame_ranges

Policy = Literal["skip", "fail"]


@dataclass(frozen=True)
class GateConfig:
    threshold: float | None = None  # None: the identity backend's (dlib 0.55 Euclidean, arcface 0.6 cosine)
    margin: float = 0.05  # the runner-up subject must be at least this much farther, else ambiguous
    revocation_interval_s: float = 1.0
    identity: str | None = None  # "dlib" | "arcface" to insist on one; None: the subjects' backend
    allow_noncommercial: bool = False  # allow identity models licensed for non-commercial use only


@dataclass
class GateDecision:
    allowed: bool
    subject: str | None
    grant_id: str | None
    reason: str  # "" when allowed
    distance: float | None = None


@dataclass
class _Tally:
    """Per shot: frames of each (subject, operation, grant, reason) decision, for the ledger."""

    frames: dict[tuple, list[int]] = field(default_factory=dict)

    def add(self, decision: GateDecision, operation: str, frame: int | None) -> None:
        key = (decision.subject, operation, decision.grant_id, decision.reason, decision.allowed)
        bucket = self.frames.setdefault(key, [])
        if frame is not None and (not bucket or bucket[-1] != frame):
            bucket.append(frame)

    def summary(self) -> list[dict[str, Any]]:
        return [
            {"subject": subject, "operation": op, "grant_id": grant_id, "reason": reason,
             "edited": allowed, "frames": frame_ranges(frames), "frame_count": len(set(frames))}
            for (subject, op, grant_id, reason, allowed), frames in self.frames.items()
        ]


class ConsentGate:
    def __init__(self, store: ConsentStore, project: str, policy: Policy, config: GateConfig,
                 trusted: dict[str, str], clock: Callable[[], datetime] | None = None):
        if policy not in ("skip", "fail"):
            raise VfxError(f"consent policy {policy!r}: expected 'skip' or 'fail'")
        self.store = store
        self.project = project
        self.policy: Policy = policy
        self.config = config
        self.trusted = trusted
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self._lock = threading.Lock()
        self._tallies: dict[str, _Tally] = {}
        self._refreshed_at = float("-inf")
        self._used_grants: set[str] = set()
        self._edits: dict[tuple[str, str, str], dict[int, tuple[float, float, float, float]]] = {}
        with store.session() as session:
            self.subjects: list[Subject] = load_subjects(session)
            entries, head = ledger.read_entries(session)
        # Everything the gate believes comes from the signed documents in the hash-chained ledger,
        # replayed in order; the grant/revocation tables (unsigned columns) are never consulted.
        problem = ledger.find_chain_problem(entries, head)
        self._broken: str | None = None if problem is None else f"consent ledger does not verify: {problem.message}"
        self.state = ConsentState.replay(entries)
        self._cursor = (entries[-1].seq, entries[-1].hash) if entries else (0, GENESIS_HASH)
        self.identity: IdentityBackend = subjects_backend(self.subjects, config)
        self.threshold = self.identity.threshold if config.threshold is None else config.threshold

    # -- matching ---------------------------------------------------------------------------
    def match(self, embedding: np.ndarray) -> tuple[Subject | None, float | None, str]:
        if not self.subjects:
            return None, None, "no subjects are enrolled"
        query = np.asarray(embedding, dtype=np.float32).reshape(-1)
        if query.size != self.identity.size:
            return None, None, (f"face embedding is {query.size}-d; subjects are enrolled with "
                                f"{self.identity.stored} ({self.identity.size}-d)")
        distances = sorted(
            (float(self.identity.distance(query, subject.embeddings).min()), subject.name, subject)
            for subject in self.subjects
        )
        best, name, subject = distances[0]
        if best > self.threshold:
            return None, best, f"no enrolled subject matches (best {best:.2f} > {self.threshold:.2f})"
        if len(distances) > 1 and distances[1][0] - best < self.config.margin:
            other, other_name = distances[1][0], distances[1][1]
            return None, best, f"ambiguous match ({name} {best:.2f}, {other_name} {other:.2f})"
        return subject, best, ""

    def embed(self, image_rgb: np.ndarray, boxes: list[Box]) -> np.ndarray:
        """Identity embeddings [N, D] of faces, made by the backend the subjects were enrolled with."""
        return self.identity.embed(image_rgb, boxes)

    # -- grants -----------------------------------------------------------------------------
    def _refresh(self) -> None:
        """Apply ledger entries appended since the last look (at most every ``revocation_interval_s``),
        checking that they continue the chain the gate has already verified."""
        now = time.monotonic()
        if self._broken or now - self._refreshed_at < self.config.revocation_interval_s:
            return
        seq, prev = self._cursor
        with self.store.session() as session:
            new = ledger.read_entries_after(session, seq)
        problem = ledger.continuation_problem(new, seq, prev)
        if problem is not None:
            self._broken = f"consent ledger does not verify: {problem.message}"
            return
        for entry in new:
            self.state.apply(entry)
        if new:
            self._cursor = (new[-1].seq, new[-1].hash)
        self._refreshed_at = now

    def _grant_decision(self, subject: Subject, operation: str, distance: float) -> GateDecision:
        def refuse(reason: str) -> GateDecision:
            return GateDecision(False, subject.name, None, reason, distance)

        if self._broken:
            return refuse(self._broken)
        enrolled = self.state.subjects.get(subject.name)
        if enrolled is None:
            return refuse(f"{subject.name!r} has no enrolment signed by a rights holder in the ledger")
        if enrolled.digest != subject.digest:
            return refuse(f"reference faces of {subject.name!r} differ from its signed enrolment (database altered)")
        # Selected by what the signed documents say, never by the table's subject/project columns.
        mine = [r for r in self.state.grants.values() if r.grant.subject == subject.name]
        here = [r for r in mine if r.grant.project == self.project]
        if not here:
            elsewhere = sorted({r.grant.project for r in mine} - {self.project})
            hint = f" (has grants only in {', '.join(elsewhere)})" if elsewhere else ""
            return refuse(f"no grant for {subject.name!r} in project {self.project!r}{hint}")
        for_op = [r for r in here if operation in r.grant.operations]
        if not for_op:
            return refuse(f"no grant for operation {operation!r} in project {self.project!r}")
        now = self.clock()
        problems: list[str] = []
        for record in sorted(for_op, key=lambda r: r.grant.document["valid_until"], reverse=True):
            problem = record.problem or grant_problem(record.grant, self.trusted, enrolled.digest, now)
            if not problem and record.grant.grant_id in self.state.revocations:
                problem = f"grant {record.grant.grant_id} revoked"
            if not problem:
                return GateDecision(True, subject.name, record.grant.grant_id, "", distance)
            problems.append(problem)
        return refuse("; ".join(problems))

    # -- the contract ------------------------------------------------------------------------
    def check(self, embedding: np.ndarray | None, operation: str, frame: int | None = None,
              shot: str = "") -> GateDecision:
        """May this face be changed by ``operation``? With policy 'fail', a refusal raises VfxError."""
        with self._lock:
            self._refresh()
            if embedding is None:
                decision = GateDecision(False, None, None, "face has no identity embedding")
            else:
                subject, distance, reason = self.match(embedding)
                decision = (GateDecision(False, None, None, reason, distance) if subject is None
                            else self._grant_decision(subject, operation, distance))
            self._tallies.setdefault(shot, _Tally()).add(decision, operation, frame)
            if decision.grant_id:
                self._used_grants.add(decision.grant_id)
        if not decision.allowed and self.policy == "fail":
            self._append("gate.refused", {"project": self.project, "operation": operation, "shot": shot,
                                          "frame": frame, "subject": decision.subject, "reason": decision.reason})
            raise VfxError(f"consent refused ({operation}, frame {frame}): {decision.reason}; policy 'fail' stops the job")
        return decision

    def apply(self, faces: list[Face], operation: str, frame: int | None = None, shot: str = "") -> list[Face]:
        """Fill each face's subject and allowed_ops/refused_ops for ``operation``."""
        for face in faces:
            decision = self.check(face.embedding, operation, frame=frame, shot=shot)
            if decision.subject is not None:
                face.subject = decision.subject
            if decision.allowed:
                face.allowed_ops[operation] = decision.grant_id
                face.refused_ops.pop(operation, None)
                if frame is not None:
                    self.record_edit(face, operation, frame)
            else:
                face.refused_ops[operation] = decision.reason
                face.allowed_ops.pop(operation, None)
        return faces

    def record_shot(self, summary: dict[str, Any]) -> None:
        """Append the per-shot gate summary (with every decision's frame ranges) to the ledger."""
        shot = str(summary.get("shot", ""))
        with self._lock:
            tally = self._tallies.pop(shot, _Tally())
        payload = {"project": self.project, "policy": self.policy, **summary, "decisions": tally.summary()}
        self._append("gate.shot", payload)

    def record_job(self, event: Literal["started", "finished", "failed"], details: dict[str, Any]) -> str:
        """Append a job start/finish to the ledger; returns the new ledger head hash."""
        return self._append(f"job.{event}", {"project": self.project, **details}).hash

    def record_edit(self, face: Face, operation: str, frame: int) -> None:
        """Note that ``face`` (allowed ``operation`` under a grant) is edited in ``frame``, for provenance."""
        grant_id = face.allowed_ops.get(operation)
        if not grant_id:
            return
        with self._lock:
            frames = self._edits.setdefault((grant_id, face.subject, operation), {})
            x, y, w, h = (float(v) for v in face.box)
            if frame in frames:  # the same subject twice in a frame: one box around both
                px, py, pw, ph = frames[frame]
                x, y, w, h = min(x, px), min(y, py), max(x + w, px + pw) - min(x, px), max(y + h, py + ph) - min(y, py)
            frames[frame] = (x, y, w, h)

    def likeness_edits(self) -> list[dict[str, Any]]:
        """Each allowed likeness edit for provenance: grant, subject and its signed reference digest,
        operation, and runs of consecutive frames with the pixel box that held the face in each run."""
        with self._lock:
            edits = {key: dict(frames) for key, frames in self._edits.items()}
        result = []
        for (grant_id, subject, operation), frames in sorted(edits.items()):
            enrolled = self.state.subjects.get(subject)
            runs: list[dict[str, Any]] = []
            for first, last in frame_ranges(sorted(frames)):
                boxes = [frames[f] for f in range(first, last + 1) if f in frames]
                x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
                x1, y1 = max(b[0] + b[2] for b in boxes), max(b[1] + b[3] for b in boxes)
                runs.append({"first": first, "last": last, "x": round(x0), "y": round(y0),
                             "width": round(x1 - x0), "height": round(y1 - y0)})
            result.append({"grant_id": grant_id, "subject": subject, "operation": operation,
                           "subject_digest": enrolled.digest if enrolled else None, "ranges": runs})
        return result

    def grant_ids_used(self) -> list[str]:
        with self._lock:
            return sorted(self._used_grants)

    def ledger_head(self) -> str | None:
        with self.store.session() as session:
            return ledger.head_hash(session)

    def _append(self, kind: str, payload: dict[str, Any]) -> ledger.LedgerEntry:
        with self.store.session() as session:
            return ledger.append(session, kind, payload)


def subjects_backend(subjects: list[Subject], config: GateConfig) -> IdentityBackend:
    """The one identity backend the enrolled subjects share (dlib when none are enrolled)."""
    stored = sorted({subject.backend for subject in subjects})
    if len(stored) > 1:
        by = "; ".join(f"{b}: {', '.join(s.name for s in subjects if s.backend == b)}" for b in stored)
        raise VfxError(f"enrolled subjects mix identity backends ({by}); their embeddings are not comparable, "
                       "re-enrol them with one --identity")
    name = backend_of_stored(stored[0]) if stored else (config.identity or "dlib")
    if config.identity is not None and config.identity != name:
        raise VfxError(f"consent identity backend {config.identity!r} requested, but the subjects are enrolled with {stored[0]}")
    return identity_backend(name, config.allow_noncommercial)


def open_gate(db_url: str | None, project: str, policy: str = "skip", config: GateConfig | None = None,
              trusted: dict[str, str] | None = None, clock: Callable[[], datetime] | None = None) -> ConsentGate:
    """A gate for one job: ``db_url`` None means VFX_CONSENT_DB or VFX_HOME/consent.db; trusted keys
    default to VFX_HOME/trusted_keys/*.pub."""
    if not project:
        raise VfxError("consent-gated steps need a project name (--project)")
    store = ConsentStore(db_url)
    return ConsentGate(store, project, policy, config or GateConfig(), trusted_keys() if trusted is None else trusted, clock)
