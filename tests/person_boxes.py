"""The hand-boxed people of vtest.avi (tests/fixtures/vtest_people_boxes.json) and how a person matte scores on them."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from conftest import SAMPLES
from vfx.frames import FrameBatch, ShotState
from vfx.video import FrameRange, FrameReader, probe

FIXTURE = Path(__file__).parent / "fixtures" / "vtest_people_boxes.json"
RUNS = ((96, 119), (496, 519))  # 4 frames of lead-in before the first boxed frame of each run
FOUND_FRACTION = 0.15  # a person counts as found when the matte covers this much of their box


def boxes() -> dict[int, list[tuple[int, int, int, int]]]:
    return {int(n): [tuple(b) for b in v] for n, v in json.loads(FIXTURE.read_text())["frames"].items()}


@dataclass
class PersonScore:
    recall: float  # boxed people found
    false_positive_px: float  # matte pixels outside every person box, per boxed frame
    cpu_ms: float  # process CPU time per frame (all threads)
    frames: int


def score(make_segmenter) -> PersonScore:
    """Runs a fresh segmenter over each run of frames (one shot each), frame by frame, and scores the boxed frames."""
    truth = boxes()
    info = probe(SAMPLES / "vtest.avi")
    found = total = 0
    outside: list[int] = []
    cpu = 0.0
    frames = 0
    for first, last in RUNS:
        segmenter = make_segmenter()
        shot = ShotState(width=info.width, height=info.height, fps=float(info.fps), first_frame=first, last_frame=last)
        for number, rgb in FrameReader(info, FrameRange(first, last)).frames():
            batch = FrameBatch(rgb[None], np.array([number]), np.array([number / float(info.fps)]))
            start = time.process_time()
            matte = segmenter(batch, shot).matte[0] > 0.5
            cpu += time.process_time() - start
            frames += 1
            if number not in truth:
                continue
            inside = np.zeros_like(matte)
            for x, y, w, h in truth[number]:
                total += 1
                found += matte[y:y + h, x:x + w].mean() >= FOUND_FRACTION
                inside[max(0, y - 3):y + h + 3, max(0, x - 3):x + w + 3] = True
            outside.append(int((matte & ~inside).sum()))
    return PersonScore(found / total, float(np.mean(outside)), 1000 * cpu / frames, frames)
