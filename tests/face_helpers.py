"""Real-footage fixtures for the face tests: Megamind.avi, Roxanne granted, Hal enrolled but not granted.

Frames 140-196: Hal talking (140-153), then a cut to Roxanne talking (154-196).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from conftest import SAMPLES
from vfx.consent.gate import ConsentGate, GateConfig, open_gate
from vfx.consent.grants import issue_grant
from vfx.consent.keys import generate_key, key_id, load_private_key, public_key_text
from vfx.consent.store import ConsentStore
from vfx.consent.subjects import collect_embeddings, enroll
from vfx.face.tracks import DetectFaces
from vfx.frames import Face, ShotState
from vfx.video import FrameReader, probe
from vfx.video.probe import FrameRange

MEGAMIND = SAMPLES / "Megamind.avi"
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
    """Source frames, output frames and faces of ``step`` (after the face detection step that
    decides its operation) over ``frames``, plus the shot summary."""
    shot = new_shot(frames)
    detect = DetectFaces(gate=step.gate, operations=(step.operation,))
    sources, outputs, faces = [], [], []
    for batch in FrameReader(probe(str(MEGAMIND)), frames).batches(batch_size):
        sources.append(batch.frames.copy())
        batch = step(detect(batch, shot), shot)
        outputs.append(batch.frames)
        faces.extend(batch.faces)
    summary = step.finish(shot)
    return np.concatenate(sources), np.concatenate(outputs), faces, summary


def granted(faces: list[Face], operation: str) -> Face | None:
    return next((f for f in faces if operation in f.allowed_ops), None)



def still(name: str) -> np.ndarray:
    """An RGB still from the samples (face_recognition's test photographs of older people)."""
    import cv2

    return cv2.cvtColor(cv2.imread(str(SAMPLES / f"{name}.jpg")), cv2.COLOR_BGR2RGB)


def camera_move(image: np.ndarray, face_box, frames: int = 6, size=(480, 360), face: float = 0.45,
                zoom: float = 1.25, pan: float = 0.2) -> np.ndarray:
    """A short clip of a still: a crop that holds the face at ``face`` of the frame height, zooms in
    by ``zoom`` and pans by ``pan`` of the frame width over the clip (uint8 [N, H, W, 3])."""
    import cv2

    x, y, w, h = face_box
    cx, cy = x + w / 2, y + h / 2
    out = []
    for k in range(frames):
        t = k / max(frames - 1, 1)
        ch = h / face / (1 + (zoom - 1) * t)
        cw = ch * size[0] / size[1]
        x0, y0 = cx + pan * cw * (t - 0.5) - cw / 2, cy + 0.5 * pan * ch * (t - 0.5) - ch / 2
        scale = size[0] / cw
        warp = np.array([[scale, 0, -x0 * scale], [0, scale, -y0 * scale]], np.float32)
        out.append(cv2.warpAffine(image, warp, size, flags=cv2.INTER_AREA, borderMode=cv2.BORDER_CONSTANT))
    return np.stack(out)


def grainy_black_and_white(frames: np.ndarray, grain: float = 18.0, seed: int = 0) -> np.ndarray:
    """Old film stock: grey, with fresh grain in every frame."""
    rng = np.random.default_rng(seed)
    grey = frames.astype(np.float32).mean(-1, keepdims=True) + rng.normal(0, grain, frames.shape[:3] + (1,))
    return np.clip(np.repeat(grey, 3, -1), 0, 255).astype(np.uint8)


def still_consent(tmp: Path, subjects: dict[str, np.ndarray], operations: tuple[str, ...]) -> Consent:
    """Each still's subject enrolled from the still itself and granted ``operations``."""
    from vfx.face.identity import detect_faces, embed_faces

    url = f"sqlite:///{tmp / 'consent.db'}"
    store = ConsentStore(url)
    holder = load_private_key(generate_key(tmp / "holder.key")[0].with_suffix(""))
    public = public_key_text(holder.public_key())
    now = datetime.now(timezone.utc)
    grant_id = ""
    for name, image in subjects.items():
        enroll(store, name, embed_faces(image, detect_faces(image)[:1]), f"{name}.jpg", key=holder)
        grant_id = issue_grant(store, holder, name, PROJECT, list(operations), now - timedelta(days=1),
                               now + timedelta(days=30)).grant_id
    return Consent(url, store, holder, {key_id(public): public}, grant_id)


def run_frames(steps: list, frames: np.ndarray, fps: float = 24.0, batch_size: int = 4, name: str = "clip"):
    """Run ``steps`` over in-memory frames as one shot; returns outputs, faces and each step's summary."""
    from vfx.frames import FrameBatch

    shot = ShotState(frames.shape[2], frames.shape[1], fps, 0, len(frames) - 1, source_path=name, project=PROJECT)
    outputs, faces = [], []
    for start in range(0, len(frames), batch_size):
        chunk = frames[start:start + batch_size].copy()
        indices = np.arange(start, start + len(chunk))
        batch = FrameBatch(chunk, indices, indices / fps)
        for step in steps:
            batch = step(batch, shot)
        outputs.append(batch.frames)
        faces.extend(batch.faces)
    summaries = {step.name: step.finish(shot) for step in steps if hasattr(step, "finish")}
    return np.concatenate(outputs), faces, summaries
