"""The restyled surroundings must not flicker more than the source does (ratio <= 1.5)."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import SAMPLES
from video_helpers import read_all
from vfx.config import PipelineConfig, with_overrides
from vfx.job import JobSpec, run_job
from vfx.restyle.styles import STYLES
from vfx.restyle.temporal import flicker_ratio, warping_errors
from vfx.video import FrameRange, FrameReader, probe


def background_flicker(frames: np.ndarray, background: np.ndarray) -> float:
    """Mean absolute frame-to-frame change over pixels that are background in both frames."""
    both = background[1:] & background[:-1]
    change = np.abs(np.diff(frames.astype(np.int16), axis=0)).mean(axis=-1)
    return float(change[both].mean())


@pytest.mark.parametrize("style", [*STYLES, "style-image"])
def test_restyle_flicker_ratio(tmp_path, style):
    overrides = {"segment.subject": ["person"]}
    if style == "style-image":
        overrides["restyle.style_image"] = str(SAMPLES / "starry_night.jpg")
    else:
        overrides["restyle.style"] = style
    run_job(JobSpec(str(SAMPLES / "vtest.avi"), str(tmp_path / "o.%04d.png"), with_overrides(PipelineConfig(), overrides),
                    frames="300-329", matte=str(tmp_path / "m.%04d.png")))
    _, output = read_all(tmp_path / "o.%04d.png")
    _, matte = read_all(tmp_path / "m.%04d.png")
    source = np.stack([f for _, f in FrameReader(probe(SAMPLES / "vtest.avi"), FrameRange(300, 329)).frames()])
    background = matte[..., 0] == 0
    ratio = background_flicker(output, background) / background_flicker(source, background)
    warping = flicker_ratio(output, source, valid=background)  # Lai et al. 2018: flow-compensated
    print(f"\nflicker {style}: restyled/source = {ratio:.2f}; warping error restyled/source = {warping:.2f}")
    assert ratio <= 1.5
    if style == "style-image":  # auto picks the neural restyle for a painting: its bar is the warping error
        assert warping <= 1.5


def test_the_warping_error_leaves_out_a_shot_cut():
    """Megamind.avi cuts between frames 153 and 154: that pair has no motion to compare, the others do."""
    frames = np.stack([rgb for _, rgb in FrameReader(probe(SAMPLES / "Megamind.avi"), FrameRange(150, 157)).frames()])
    errors = warping_errors(frames, frames)
    assert np.isnan(errors[3])  # 153 -> 154
    assert all(np.isfinite(e) for i, e in enumerate(errors) if i != 3)

