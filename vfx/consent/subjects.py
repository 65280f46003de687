"""Enrolled subjects: reference identity embeddings collected from images or a clip."""
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vfx.consent import documents, ledger
from vfx.consent.documents import Signed
from vfx.consent.records import embeddings_digest, record_authority, record_enrolment
from vfx.consent.schema import SubjectRow
from vfx.consent.store import ConsentStore
from vfx.errors import VfxError
from vfx.face.identity import detect_faces
from vfx.face.identity_backends import SIZES, IdentityBackend, backend_of_stored, identity_backend

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".exr"}
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}")
MAX_REFERENCES = 32
DEFAULT_BACKEND = "dlib-resnet-v1"  # what enrolments without a backend choice record


@dataclass(frozen=True)
class Subject:
    name: str
    embeddings: np.ndarray  # float32 [N, D]: D 128 for dlib, 512 for arcface
    digest: str
    backend: str = DEFAULT_BACKEND  # the identity backend that made the embeddings (stored name)


@dataclass(frozen=True)
class Enrolment:
    embeddings: np.ndarray
    frames_seen: int
    frames_without_face: int
    outliers_dropped: int


def check_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise VfxError(f"subject name {name!r}: use letters, digits, space, '.', '_' or '-' (at most 100)")
    return name


def _source_images(path: Path, frames: str | None, step: int) -> Iterator[np.ndarray]:
    from vfx.video import FrameReader, parse_frame_range, probe
    from vfx.video.sequence import read_image_rgb

    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise VfxError(f"{path}: no images in this folder")
        for file in files[::step]:
            yield read_image_rgb(file)
    elif path.suffix.lower() in IMAGE_SUFFIXES:
        yield read_image_rgb(path)
    else:
        info = probe(str(path))
        reader = FrameReader(info, parse_frame_range(frames, info))
        for i, (_, image) in enumerate(reader.frames()):
            if i % step == 0:
                yield image


def collect_embeddings(path: str | Path, frames: str | None = None, step: int = 1,
                       consistency: float | None = None, backend: IdentityBackend | None = None) -> Enrolment:
    """The largest face of each image/frame, keeping only the dominant identity.

    Faces farther than ``consistency`` (default: the backend's) from the medoid of all collected
    faces are dropped, so a frame where another person is largest does not pollute the reference set.
    """
    backend = backend or identity_backend("dlib")
    consistency = backend.consistency if consistency is None else consistency
    path = Path(path)
    if not path.exists():
        raise VfxError(f"{path}: no such file or folder")
    if step < 1:
        raise VfxError(f"--step must be at least 1, got {step}")
    found: list[np.ndarray] = []
    seen = missing = 0
    for image in _source_images(path, frames, step):
        seen += 1
        boxes = detect_faces(image)
        if not boxes:
            missing += 1
            continue
        found.append(backend.embed(image, boxes[:1])[0])
    if not found:
        raise VfxError(f"{path}: no face found in {seen} image(s)")
    stacked = np.stack(found)
    pairwise = np.stack([backend.distance(row, stacked) for row in stacked])
    medoid = stacked[int(np.argmin(pairwise.sum(axis=1)))]
    keep = backend.distance(medoid, stacked) <= consistency
    kept = stacked[keep]
    if len(kept) > MAX_REFERENCES:
        kept = kept[np.linspace(0, len(kept) - 1, MAX_REFERENCES).round().astype(int)]
    return Enrolment(kept.astype(np.float32), seen, missing, int((~keep).sum()))


def sign_enrolment(key: Ed25519PrivateKey | None, name: str, embeddings: np.ndarray, source: str,
                   backend: str = DEFAULT_BACKEND) -> Signed:
    """The rights holder's signed enrolment of ``name`` with these reference faces; ``key`` becomes its authority."""
    if key is None:
        raise VfxError(f"enrolling {name!r} needs the rights holder's key (--key HOLDER.key): "
                       "reference faces are stored only with someone's consent")
    check_name(name)
    backend_of_stored(backend)
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    if embeddings.ndim != 2 or embeddings.shape[1] != SIZES[backend] or len(embeddings) == 0:
        raise VfxError(f"enrolment with {backend} needs embeddings [N,{SIZES[backend]}], got {embeddings.shape}")
    return documents.enrolment(key, name, embeddings_digest(embeddings), backend, len(embeddings), source)


def submit_enrolment(store: ConsentStore, signed: Signed, embeddings: np.ndarray) -> ledger.LedgerEntry:
    check_name(str(signed.document.get("subject", "")))
    backend_of_stored(str(signed.document.get("backend", "")))
    return record_enrolment(store, signed, embeddings, SIZES)


def enroll(store: ConsentStore, name: str, embeddings: np.ndarray, source: str,
           backend: str = DEFAULT_BACKEND, *, key: Ed25519PrivateKey | None = None) -> ledger.LedgerEntry:
    """Store a new subject, signed by ``key`` (its first authority), with the identity backend (stored
    name) that made its embeddings, and record the signed enrolment in the ledger."""
    return submit_enrolment(store, sign_enrolment(key, name, embeddings, source, backend), embeddings)


def authorize(store: ConsentStore, key: Ed25519PrivateKey, name: str, action: str, other: str) -> ledger.LedgerEntry:
    """``key`` (an authority of ``name``) adds or removes another authority (a public key)."""
    return record_authority(store, documents.authority(key, name, action, other))  # type: ignore[arg-type]


def row_to_subject(row: SubjectRow) -> Subject:
    backend_of_stored(row.backend)
    embeddings = np.frombuffer(row.embeddings, dtype="<f4").reshape(-1, SIZES[row.backend]).astype(np.float32)
    return Subject(row.name, embeddings, embeddings_digest(embeddings), row.backend)  # recomputed: a swapped reference set no longer matches its grants


def load_subjects(session: Session) -> list[Subject]:
    return [row_to_subject(row) for row in session.execute(select(SubjectRow).order_by(SubjectRow.name)).scalars()]
