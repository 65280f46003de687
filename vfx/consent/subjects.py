"""Enrolled subjects: reference identity embeddings collected from images or a clip."""
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from vfx.consent import ledger
from vfx.consent.canonical import sha256_hex
from vfx.consent.schema import SubjectRow
from vfx.consent.store import ConsentStore
from vfx.errors import VfxError
from vfx.face.identity import EMBEDDING_SIZE, detect_faces, embed_faces, identity_distance

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".exr"}
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}")
MAX_REFERENCES = 32
BACKEND = "dlib-resnet-v1"


@dataclass(frozen=True)
class Subject:
    name: str
    embeddings: np.ndarray  # float32 [N, 128]
    digest: str


@dataclass(frozen=True)
class Enrolment:
    embeddings: np.ndarray
    frames_seen: int
    frames_without_face: int
    outliers_dropped: int


def embeddings_digest(embeddings: np.ndarray) -> str:
    return sha256_hex(np.ascontiguousarray(embeddings, dtype="<f4").tobytes())


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
                       consistency: float = 0.6) -> Enrolment:
    """The largest face of each image/frame, keeping only the dominant identity.

    Faces farther than ``consistency`` from the medoid of all collected faces are dropped, so a
    frame where another person is largest does not pollute the reference set.
    """
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
        found.append(embed_faces(image, boxes[:1])[0])
    if not found:
        raise VfxError(f"{path}: no face found in {seen} image(s)")
    stacked = np.stack(found)
    pairwise = np.linalg.norm(stacked[:, None, :] - stacked[None, :, :], axis=-1)
    medoid = stacked[int(np.argmin(pairwise.sum(axis=1)))]
    keep = identity_distance(medoid, stacked) <= consistency
    kept = stacked[keep]
    if len(kept) > MAX_REFERENCES:
        kept = kept[np.linspace(0, len(kept) - 1, MAX_REFERENCES).round().astype(int)]
    return Enrolment(kept.astype(np.float32), seen, missing, int((~keep).sum()))


def enroll(store: ConsentStore, name: str, embeddings: np.ndarray, source: str) -> ledger.LedgerEntry:
    """Store a new subject and record the enrolment in the ledger."""
    check_name(name)
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    if embeddings.ndim != 2 or embeddings.shape[1] != EMBEDDING_SIZE or len(embeddings) == 0:
        raise VfxError(f"enrolment needs embeddings [N,{EMBEDDING_SIZE}], got {embeddings.shape}")
    digest = embeddings_digest(embeddings)
    with store.session() as session:
        if session.get(SubjectRow, name) is not None:
            raise VfxError(f"subject {name!r} is already enrolled")
        session.add(SubjectRow(name=name, enrolled_at=ledger.utc_now(), digest=digest,
                               embeddings=embeddings.astype("<f4").tobytes(), count=len(embeddings),
                               source=source, backend=BACKEND))
        session.flush()
        return ledger.append(session, "subject.enrolled", {
            "subject": name, "digest": digest, "references": len(embeddings), "source": source, "backend": BACKEND,
        })


def row_to_subject(row: SubjectRow) -> Subject:
    embeddings = np.frombuffer(row.embeddings, dtype="<f4").reshape(-1, EMBEDDING_SIZE).astype(np.float32)
    return Subject(row.name, embeddings, embeddings_digest(embeddings))  # recomputed: a swapped reference set no longer matches its grants


def load_subjects(session: Session) -> list[Subject]:
    return [row_to_subject(row) for row in session.execute(select(SubjectRow).order_by(SubjectRow.name)).scalars()]
