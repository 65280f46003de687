"""Real-footage fixtures shared by the consent tests: Megamind.avi's two characters."""
from __future__ import annotations

import functools
from datetime import datetime, timedelta, timezone

import numpy as np

from conftest import SAMPLES
from vfx.face.identity import detect_faces, embed_faces
from vfx.frames import Face
from vfx.video import FrameReader, probe
from vfx.video.probe import FrameRange

MEGAMIND = SAMPLES / "Megamind.avi"
ENROL_FRAMES = (30, 55, 5)  # first, last, step: frames where the big-headed character is largest
TEST_FRAME = 80  # both characters in view, neither used for enrolment


@functools.lru_cache(maxsize=None)
def frame(number: int) -> np.ndarray:
    reader = FrameReader(probe(str(MEGAMIND)), FrameRange(number, number))
    (_, image), = list(reader.frames())
    return image


@functools.lru_cache(maxsize=1)
def enrolled_embeddings() -> np.ndarray:
    first, last, step = ENROL_FRAMES
    rows = []
    for number in range(first, last + 1, step):
        image = frame(number)
        rows.append(embed_faces(image, detect_faces(image)[:1])[0])
    return np.stack(rows)


@functools.lru_cache(maxsize=1)
def faces_of_test_frame() -> tuple[list[tuple[float, float, float, float]], np.ndarray]:
    """Boxes (largest first: the enrolled character, then the other one) and embeddings in TEST_FRAME."""
    image = frame(TEST_FRAME)
    boxes = detect_faces(image)
    assert len(boxes) == 2, boxes
    return boxes, embed_faces(image, boxes)


def days(n: float) -> datetime:
    return datetime.now(timezone.utc) + timedelta(days=n)


def faces_in_test_frame() -> list[Face]:
    boxes, embeddings = faces_of_test_frame()
    return [Face(box=box, landmarks=np.zeros((0, 2), np.float32), track_id=i, embedding=embeddings[i])
            for i, box in enumerate(boxes)]
