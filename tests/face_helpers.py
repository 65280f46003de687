"""Real-footage fixtures for the face tests: Megamind.avi, Roxanne granted, Hal enrolled but not granted.

Frames 140-196: Hal talking (140-153), then a cut to Roxanne talking (154-196).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from vfx.consent.gate import ConsentGate, GateConfig, open_gate
from vfx.consent.grants import issue_grant
from vfx.consent.keys import generate_key, key_id, load_private_key, public_key_text
from vfx.consent.store import ConsentStore
from vfx.consent.subjects import collect_embeddings, enroll
from vfx.frames import Face, ShotState
from vfx.video import FrameReader, probe
from vfx.video.probe import FrameRange

MEGAMIND = Path(__file__).resolve().parents[1].parent / "shared" / "samples" / "Megamind.avi"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
PROJECT = "face-tests"
SHOT = FrameRange(140, 196)
HAL_FRAMES = range(140, 154)
ROXANNE_FRAMES = range(154, 197)


@dataclass
class Consent:
    url: str
    store: ConsentStore
    holder: object
    trusted: dict[str, str]
    grant_id: str

    def gate(self, policy: str = "skip") -> ConsentGate:
        return open_gate(self.url, PROJECT, policy, GateConfig(revocation_interval_s=0.0), trusted=self.trusted)


def make_consent(tmp: Path, operations: tuple[str, ...]) -> Consent:
    url = f"sqlite:///{tmp / 'consent.db'}"
    store = ConsentStore(url)
    holder = load_private_key(generate_key(tmp / "holder.key")[0].with_suffix(""))
    public = public_key_text(holder.public_key())
    enroll(store, "roxanne", collect_embeddings(MEGAMIND, "160-195", step=5).embeddings, "Megamind.avi 160-195", key=holder)
    enroll(store, "hal", collect_embeddings(MEGAMIND, "200-260", step=10).embeddings, "Megamind.avi 200-260", key=holder)
    now = datetime.now(timezone.utc)
    grant = issue_grant(store, holder, "roxanne", PROJECT, list(operations), now - timedelta(days=1), now + timedelta(days=30))
    return Consent(url, store, holder, {key_id(public): public}, grant.grant_id)


def new_shot(frames: FrameRange = SHOT) -> ShotState:
    info = probe(str(MEGAMIND))
    return ShotState(info.width, info.height, float(info.fps), frames.first, frames.last,
                     source_path=str(MEGAMIND), project=PROJECT)


def run_step(step, frames: FrameRange = SHOT, batch_size: int = 16):
    """Source frames, output frames and faces of ``step`` over ``frames``, plus the shot summary."""
    shot = new_shot(frames)
    sources, outputs, faces = [], [], []
    for batch in FrameReader(probe(str(MEGAMIND)), frames).batches(batch_size):
        sources.append(batch.frames.copy())
        batch = step(batch, shot)
        outputs.append(batch.frames)
        faces.extend(batch.faces)
    summary = step.finish(shot)
    return np.concatenate(sources), np.concatenate(outputs), faces, summary


def granted(faces: list[Face], operation: str) -> Face | None:
    return next((f for f in faces if operation in f.allowed_ops), None)
