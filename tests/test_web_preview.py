"""The web page's one-frame matte preview: the prompted segmenter on a shot of one frame, no frames to re-read."""
from __future__ import annotations

import numpy as np

from conftest import SAMPLES
from serving.web.preview import SubjectPrompts, subject_matte
from vfx.video import FrameRange, FrameReader, probe

WALKER_ON_40 = (558, 228, 612, 336)  # the walker in the red jacket on frame 40 of vtest.avi: x0, y0, x1, y1


def test_a_box_on_a_later_frame_gives_its_matte_without_the_shot():
    """The preview's frame source yields nothing (its shot is the one frame): the key frame's cut must come
    from the frame itself (a key cut that read its next frame from the source once failed here)."""
    rgb = next(FrameReader(probe(SAMPLES / "vtest.avi"), FrameRange(40, 40)).frames())[1]
    x0, y0, x1, y1 = WALKER_ON_40
    matte = subject_matte(rgb, 40, [SubjectPrompts(frame=40, box=(x0, y0, x1 - x0, y1 - y0))])
    inside = np.zeros(matte.shape, bool)
    inside[y0:y1, x0:x1] = True
    print(f"\nwalker box: {matte[inside].mean():.2f} of the box kept, {(matte[~inside] > 0.5).sum()} pixels outside it")
    assert matte[inside].mean() > 0.3, "the walker is in the matte"
    assert (matte[~inside] > 0.5).sum() < 0.2 * inside.sum(), "the matte stays at the walker"
