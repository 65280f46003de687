"""A box takes the whole person: dark hair on a dark wall (Megamind.avi, Roxanne), checked on hand-marked regions."""
from __future__ import annotations

import numpy as np

from conftest import SAMPLES
from video_helpers import read_all
from vfx.config import PipelineConfig, with_overrides
from vfx.job import JobSpec, run_job

# Marked by hand on frames 36-44 (x0, y0, x1, y1): inside her dark hair, the dark wall inside the box
# that must stay background, and the lit glow on the wall just beside her hair.
HAIR = [(160, 90, 200, 140), (230, 60, 290, 100)]
WALL = [(85, 5, 115, 55), (385, 5, 408, 80)]
GLOW = [(325, 40, 355, 70)]


def _mean_in(mattes: np.ndarray, boxes: list[tuple[int, int, int, int]]) -> float:
    return float(np.mean([mattes[:, y0:y1, x0:x1].mean() for x0, y0, x1, y1 in boxes]))


def _boxed_alpha(tmp_path, frames: str) -> np.ndarray:
    """float alpha [T, H, W] of `vfx run` with her box prompted on frame 40, over ``frames``."""
    config = with_overrides(PipelineConfig(), {"segment.subject": ["box:80,0,330,528@40"]})
    run_job(JobSpec(str(SAMPLES / "Megamind.avi"), str(tmp_path / "out.mp4"), config, frames=frames,
                    matte=str(tmp_path / "m.%04d.png")))
    _, mattes = read_all(tmp_path / "m.%04d.png")
    return mattes[..., 0].astype(np.float32) / 255.0


def test_box_prompt_keeps_dark_hair_on_a_dark_wall(tmp_path):
    alpha = _boxed_alpha(tmp_path, "36-44")
    hair, wall, glow = _mean_in(alpha, HAIR), _mean_in(alpha, WALL), _mean_in(alpha, GLOW)
    # the glow is reported, not asserted: the person model calls that halo person, a known false positive (issue 11)
    print(f"\nMegamind box prompt, frames 36-44: mean alpha in her hair {hair:.2f}, on the dark wall inside the box "
          f"{wall:.2f}, on the lit glow beside her hair {glow:.2f}")
    assert len(alpha) == 9
    assert hair >= 0.9, "the dark hair inside the box is dropped"
    assert wall <= 0.1, "the wall behind her is taken as subject"


# Marked by hand on frames 56-70, while her head tilts left and down: the left, central and right tufts
# of her hair (dark on the dark wall and on the lit heart behind her), inside the hair on every one of them.
TILT_HAIR = [(165, 135, 205, 165), (240, 110, 280, 150), (300, 120, 330, 150)]


def test_tracked_head_keeps_its_hair_while_it_tilts(tmp_path):
    alpha = _boxed_alpha(tmp_path, "40-70")[16:]  # frames 56-70
    hair, wall, glow = _mean_in(alpha, TILT_HAIR), _mean_in(alpha, WALL), _mean_in(alpha, GLOW)
    print(f"\nMegamind box prompt, frames 56-70 (head tilting): mean alpha in her hair {hair:.2f}, on the dark wall "
          f"{wall:.2f}, on the lit glow {glow:.2f}")
    assert len(alpha) == 15
    assert hair >= 0.7, "the tracked head loses its hair as it tilts"
    assert wall <= 0.1, "the wall behind her is taken as subject"
