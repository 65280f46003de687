"""More subjects than a matte has channels: the union in the named matte, each subject's beside it."""
from __future__ import annotations

import numpy as np

from conftest import SAMPLES
from video_helpers import read_all
from vfx.config import PipelineConfig, with_overrides
from vfx.job import JobSpec, run_job
from vfx.video import FrameRange, FrameReader, probe
from vfx.video.writer import subject_matte_path

# Four things on vtest.avi's first frame: the tripod, a parked van, two people walking.
BOXES = ["tripod=box:455,335,75,145@0", "van=box:648,40,80,60@0", "walker=box:248,215,40,95@0", "box:636,236,52,88@0"]


def test_subject_matte_paths():
    assert subject_matte_path("out/m.mp4", "van") == "out/m.van.mp4"
    assert subject_matte_path("out/m_%04d.png", "s4") == "out/m.s4.%04d.png"
    assert subject_matte_path("%04d.exr", "s1") == "matte.s1.%04d.exr"


def test_four_subjects_write_their_union_and_one_matte_each(tmp_path):
    config = with_overrides(PipelineConfig(), {"segment.subject": BOXES, "restyle.style": "night", "segment.feather_px": 0})
    matte = str(tmp_path / "m.%04d.png")
    run_job(JobSpec(str(SAMPLES / "vtest.avi"), str(tmp_path / "o.%04d.png"), config, frames="0-3", matte=matte))
    union = read_all(tmp_path / "m.%04d.png")[1][..., 0]
    each = {name: read_all(subject_matte_path(matte, name))[1][..., 0] for name in ("tripod", "van", "walker", "s4")}
    for name, subject in each.items():
        assert subject.shape == union.shape and (subject == 255).sum() > 200, f"{name}: an empty matte"
    assert np.array_equal(union, np.maximum.reduce(list(each.values())))
    frames = np.stack([f for _, f in FrameReader(probe(str(SAMPLES / "vtest.avi")), FrameRange(0, 3)).frames()])
    output = read_all(tmp_path / "o.%04d.png")[1]
    kept = union == 255
    assert np.array_equal(output[kept], frames[kept])  # every subject stays untouched
