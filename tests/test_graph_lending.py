"""mediapipe graphs are lent, not made per thread: a graph dropped without close() keeps ~120 MB that
Python never gets back, and a service builds steps per stream and job while threads come and go (the
bench's 50 streams took one replica to 20 GB). The process holds as many graphs as ran at once."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from conftest import SAMPLES
from vfx.config import PipelineConfig, with_overrides
from vfx.face.detect import GRAPHS, FaceDetector
from vfx.frames import FrameBatch, ShotState
from vfx.job import build_steps
from vfx.segment.person import POSE, SELFIE
from vfx.video import FrameRange, FrameReader, probe


def frames(clip: str, count: int, first: int = 0) -> np.ndarray:
    return np.stack([f for _, f in FrameReader(probe(str(SAMPLES / clip)), FrameRange(first, first + count - 1)).frames()])


def test_person_mattes_of_many_streams_share_as_many_graphs_as_ran_at_once():
    config = with_overrides(PipelineConfig(), {"segment.subject": ["person"]})
    clip = frames("vtest.avi", 4)
    for stream in range(4):  # four streams one after another, each on two fresh threads
        [segment] = build_steps(config, "cpu")

        def one(i: int) -> None:
            segment(FrameBatch(clip[i:i + 1].copy(), np.array([i]), np.array([i / 25.0])), ShotState(768, 576, 25.0, 0, 3))

        with ThreadPoolExecutor(2) as pool:
            list(pool.map(one, range(4)))
    assert 1 <= SELFIE[1].made <= 2 and SELFIE[0].made <= 2 and POSE.made <= 2
    assert len(SELFIE[1].free) == SELFIE[1].made  # every graph came back


def test_face_detection_batches_reuse_the_graphs():
    detector = FaceDetector(workers=2)
    clip = frames("Megamind.avi", 6, first=40)  # Roxanne, face to camera
    for first in range(0, 6, 2):  # each batch runs on a new pool of two threads
        assert all(len(faces) >= 1 for faces in detector.detect_batch(clip[first:first + 2]))
    assert 1 <= GRAPHS.made <= 2 and len(GRAPHS.free) == GRAPHS.made
