"""A damaged frame is not a shot cut; a real cut is, and the log says which."""
from __future__ import annotations

import logging

import numpy as np

from conftest import SAMPLES
from video_helpers import read_all, write_sequence
from vfx.config import PipelineConfig, with_overrides
from vfx.job import JobSpec, run_job
from vfx.video import FrameRange, FrameReader, probe


def run(tmp_path, source: str, subject: str, frames: str | None = None, batch: int = 8) -> np.ndarray:
    config = with_overrides(PipelineConfig(), {"segment.subject": [subject], "restyle.style": "night", "batch_size": batch})
    run_job(JobSpec(source, str(tmp_path / "out.%04d.png"), config, frames=frames, matte=str(tmp_path / "m.%04d.png")))
    return read_all(tmp_path / "m.%04d.png")[1][..., 0] > 127


def test_glitched_frame_of_a_damaged_clip_is_not_a_cut(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="vfx.segment.prompt")
    for batch in (8, 11):  # frame 40 in mid-batch, and as the last frame of a batch (decided by the next)
        folder = tmp_path / f"b{batch}"
        folder.mkdir()
        mattes = run(folder, str(SAMPLES / "Megamind_bugy.avi"), "box:80,0,330,528@30", frames="30-53", batch=batch)
        areas = mattes.reshape(len(mattes), -1).mean(axis=1)
        print(f"\nMegamind_bugy.avi, batch {batch}: matte area per frame {np.round(areas, 3).tolist()}")
        assert areas[12:].min() > 0.5 * areas[:10].mean(), "the subject is still tracked after the damaged frame 40"
    assert "frame 40 looks damaged" in caplog.text
    assert "shot cut" not in caplog.text


def test_real_cut_is_logged_and_the_subject_is_dropped_after_it(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="vfx.segment.prompt")
    first = [f for _, f in FrameReader(probe(SAMPLES / "Megamind.avi"), FrameRange(30, 41)).frames()]
    second = [f for _, f in FrameReader(probe(SAMPLES / "vtest.avi"), FrameRange(0, 11)).frames()]
    second = [np.ascontiguousarray(f[:first[0].shape[0], :first[0].shape[1]]) for f in second]
    pattern = write_sequence(tmp_path, np.stack(first + second), first=0, pattern="cut.%04d.png")
    mattes = run(tmp_path, pattern, "box:80,0,330,528@0")
    areas = mattes.reshape(len(mattes), -1).mean(axis=1)
    assert areas[:12].min() > 0.05 and areas[12:].max() == 0.0
    assert "shot cut at frame 12" in caplog.text
