"""What a likeness step did to one shot, exactly: per subject, the frames whose pixels it changed,
the frames where a subject it edited elsewhere in the shot was not found, and every face it refused
and why. The step records each batch as it goes (in its own ``shot.steps[step name]``); ``finish``
turns that into the shot's summary for the job record and the gate's ledger.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vfx.errors import VfxError
from vfx.face.decisions import shot_key
from vfx.frames import Face, FrameBatch, ShotState, frame_ranges

log = logging.getLogger(__name__)


@dataclass
class TrackRecord:
    subject: str | None = None
    grant_ids: set[str] = field(default_factory=set)
    edited: list[int] = field(default_factory=list)  # frames whose pixels this step changed for the face
    unchanged: list[int] = field(default_factory=list)  # granted, but the edit left the pixels as they were
    refused: dict[int, str] = field(default_factory=dict)  # frame -> reason


@dataclass
class EditRecord:
    """One likeness step's record of one shot."""

    frames: list[int] = field(default_factory=list)  # every frame the step saw
    tracks: dict[int, TrackRecord] = field(default_factory=dict)
    summarised: bool = False

    def add(self, index: int, face: Face, operation: str, changed: bool) -> None:
        record = self.tracks.setdefault(face.track_id, TrackRecord())
        record.subject = face.subject or record.subject
        grant = face.allowed_ops.get(operation)
        if grant is None:
            record.refused[index] = face.refused_ops.get(operation, "not decided")
            return
        record.grant_ids.add(grant)
        (record.edited if changed else record.unchanged).append(index)


def protect_region(face: Face, shape, pad: float = 0.15) -> tuple[int, int, int, int]:
    """The rectangle that must stay pixel-identical for a face that may not be edited."""
    x, y, w, h = face.box
    h_img, w_img = shape[:2]
    return (max(0, int(x - pad * w)), max(0, int(y - pad * h)),
            min(w_img, int(np.ceil(x + (1 + pad) * w))), min(h_img, int(np.ceil(y + (1 + pad) * h))))


def edit_granted_faces(step: str, operation: str, batch: FrameBatch, shot: ShotState,
                       edit: Callable[[np.ndarray, Face, int], None], workers: int = 2, gate: Any = None) -> FrameBatch:
    """Run ``edit(frame_out, face, i)`` on the faces of ``batch.faces`` granted ``operation``, copy the
    input pixels back over every face that is not granted (so those stay identical), and record in
    ``shot.steps[step]`` which faces' pixels really changed (and with the gate, for the C2PA manifest's
    regions, where)."""
    if batch.faces is None:
        raise VfxError(f"{step}: no faces on the batch; the face detection step must run before it")
    frames_in = batch.frames
    out = frames_in.copy()

    def one(i: int) -> list[bool]:
        faces = batch.faces[i]
        for face in faces:
            if operation in face.allowed_ops:
                edit(out[i], face, i)
        for face in faces:
            if operation not in face.allowed_ops:
                x0, y0, x1, y1 = protect_region(face, out[i].shape)
                out[i, y0:y1, x0:x1] = frames_in[i, y0:y1, x0:x1]
        return [operation in face.allowed_ops and _changed(frames_in[i], out[i], face) for face in faces]

    with ThreadPoolExecutor(workers) as pool:
        changed = list(pool.map(one, range(len(batch))))
    record: EditRecord = shot.steps.setdefault(step, EditRecord())
    for index, faces, flags in zip(batch.indices.tolist(), batch.faces, changed):
        record.frames.append(int(index))
        for face, flag in zip(faces, flags):
            record.add(int(index), face, operation, flag)
            if flag and gate is not None:
                gate.record_edit(face, operation, int(index))
    if batch.source is None:
        batch.source = frames_in
    batch.frames = out
    return batch


def _changed(before: np.ndarray, after: np.ndarray, face: Face) -> bool:
    """Did any pixel around ``face`` change? (An edit reaches at most a face size beyond its box.)"""
    x, y, w, h = face.box
    x0, y0 = max(0, int(x - w)), max(0, int(y - h))
    x1, y1 = int(np.ceil(x + 2 * w)), int(np.ceil(y + 2 * h))
    return not np.array_equal(before[y0:y1, x0:x1], after[y0:y1, x0:x1])


def shot_report(record: EditRecord, shot: ShotState, step: str, operation: str) -> dict[str, Any]:
    """The summary of one step on one shot; ``message`` says it in one line."""
    tracks, subjects = [], {}
    for track_id, rec in sorted(record.tracks.items()):
        reasons = sorted(set(rec.refused.values()))
        tracks.append({"track": track_id, "subject": rec.subject, "grant_ids": sorted(rec.grant_ids),
                       "edited": frame_ranges(rec.edited), "refused": frame_ranges(list(rec.refused)), "reasons": reasons})
        agg = subjects.setdefault(rec.subject or "unknown", {"edited": set(), "unchanged": set(), "refused": set(),
                                                             "grant_ids": set(), "reasons": set()})
        agg["edited"] |= set(rec.edited)
        agg["unchanged"] |= set(rec.unchanged)
        agg["refused"] |= set(rec.refused)
        agg["grant_ids"] |= rec.grant_ids
        agg["reasons"] |= set(reasons)
    seen = set(record.frames)
    report_subjects = {}
    for name, agg in sorted(subjects.items()):
        granted = agg["edited"] | agg["unchanged"]
        report_subjects[name] = {
            "edited": frame_ranges(sorted(agg["edited"])), "edited_count": len(agg["edited"]),
            "not_found": frame_ranges(sorted(seen - granted - agg["refused"])) if granted else [],
            "unchanged": frame_ranges(sorted(agg["unchanged"])),
            "refused": frame_ranges(sorted(agg["refused"])), "grant_ids": sorted(agg["grant_ids"]),
            "reasons": sorted(agg["reasons"]),
        }
    edited_frames = sorted(set().union(*(set(r.edited) for r in record.tracks.values())) if record.tracks else set())
    return {
        "shot": shot_key(shot), "step": step, "operation": operation, "source": shot.source_path, "project": shot.project,
        "frames": [shot.first_frame, shot.last_frame], "frames_seen": len(seen),
        "edited_frames": frame_ranges(edited_frames), "edited_count": len(edited_frames),
        "tracks": tracks, "subjects": report_subjects,
        "refused_faces": [{"track": t["track"], "subject": t["subject"], "frames": t["refused"], "reasons": t["reasons"]}
                          for t in tracks if t["refused"]],
        "message": _message(operation, len(seen), edited_frames, report_subjects, tracks),
    }


def _message(operation: str, seen: int, edited: list[int], subjects: dict[str, dict], tracks: list[dict]) -> str:
    refused = [t for t in tracks if t["refused"]]
    why = sorted({f"{t['subject'] or 'unknown face'}: {r}" for t in refused for r in t["reasons"]})
    refusals = f"; refused {len(refused)} face track(s) ({'; '.join(why[:3])}{'; ...' if len(why) > 3 else ''})" if refused else ""
    if not edited:
        faces = "no face was found" if not tracks else "no face held a grant" if not any(
            s["grant_ids"] for s in subjects.values()) else "granted faces were left unchanged"
        return f"{operation}: edited nothing in {seen} frames ({faces}){refusals}"
    parts = []
    for name, s in subjects.items():
        if s["edited_count"]:
            missing = sum(b - a + 1 for a, b in s["not_found"])
            parts.append(f"{name} on {s['edited_count']} frames" + (f" (not found on {missing})" if missing else ""))
    return f"{operation}: edited {', '.join(parts)} of {seen} frames{refusals}"


def finish_report(gate: Any, shot: ShotState, step: str, operation: str,
                  extra: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """Record the shot's summary with the gate's ledger and in ``shot.events``, once. With consent
    policy 'fail', a step that edited nothing refuses the job (after the ledger has the reason)."""
    record: EditRecord | None = shot.steps.get(step)
    if record is None or record.summarised:
        return None
    record.summarised = True
    summary = {**shot_report(record, shot, step, operation), **(extra or {})}
    gate.record_shot(summary)
    shot.events.append(summary)
    (log.info if summary["edited_count"] else log.warning)(summary["message"])
    if not summary["edited_count"] and getattr(gate, "policy", "skip") == "fail":
        raise VfxError(f"{summary['message']}; consent policy 'fail' refuses the job")
    return summary
