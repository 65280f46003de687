"""Steps release their mediapipe graphs when whoever built them is done (each set held ~120 MB that
Python's garbage collector never returned: a service building steps per stream ran out of memory)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from conftest import SAMPLES
from vfx.config import PipelineConfig, with_overrides
from vfx.frames import FrameBatch, ShotState
from vfx.job import build_steps, close_steps
from vfx.video import FrameRange, FrameReader, probe


def frames(count: int) -> np.ndarray:
    return np.stack([f for _, f in FrameReader(probe(str(SAMPLES / "vtest.avi")), FrameRange(0, count - 1)).frames()])


def graphs_of(segmenter) -> list:
    return [g for per_thread in (*segmenter._models, segmenter._poses) for g in per_thread._made]


def test_a_person_matte_closes_every_threads_graphs_and_can_run_again():
    config = with_overrides(PipelineConfig(), {"segment.subject": ["person"]})
    [segment] = build_steps(config, "cpu")
    shot = ShotState(768, 576, 25.0, 0, 3)
    clip = frames(4)

    def one(i: int) -> None:
        segment(FrameBatch(clip[i:i + 1].copy(), np.array([i]), np.array([i / 25.0])), ShotState(768, 576, 25.0, 0, 3))

    with ThreadPoolExecutor(2) as pool:  # two threads: two sets of graphs
        list(pool.map(one, range(4)))
    made = graphs_of(segment)
    assert len(made) >= 3 and all(g._graph is not None for g in made)
    close_steps([segment])
    assert all(g._graph is None for g in made) and graphs_of(segment) == []
    batch = segment(FrameBatch(clip[:1].copy(), np.array([0]), np.array([0.0])), shot)  # reopens on demand
    assert batch.matte is not None and len(graphs_of(segment)) >= 1
    close_steps([segment])


def test_a_stream_closes_its_steps_when_it_ends():
    from serving.capabilities import build_stream_steps

    config = with_overrides(PipelineConfig(), {"segment.subject": ["person"], "restyle.style": "night"})
    stream = build_stream_steps("s1", config, True, (768, 576), 25.0, None)
    clip = frames(2)
    batch = FrameBatch(clip.copy(), np.arange(2), np.arange(2) / 25.0)
    for step in stream.steps:
        batch = step(batch, stream.shot)
    faces, segment = stream.steps[0], next(s for s in stream.steps if s.name == "segment")
    made = graphs_of(segment) + list(faces.detector._per_thread._made)
    assert made
    stream.finish()
    assert graphs_of(segment) == [] and faces.detector._per_thread._made == []
    assert all(g._graph is None for g in graphs_of_all(made))


def graphs_of_all(made: list) -> list:
    """mediapipe graphs inside what was made: person graphs themselves, the face detector's three per thread."""
    out = []
    for item in made:
        out += [item.full, item.short, item.mesh] if hasattr(item, "mesh") else [item]
    return out
