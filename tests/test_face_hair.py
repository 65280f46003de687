"""--rejuvenate-hair on a real photograph (biden.jpg), in colour and in grainy black and white: the
white hair on top of the head darkens visibly, the curtain behind the head does not change."""
from __future__ import annotations

import numpy as np
import pytest

from face_helpers import grainy_black_and_white, still
from vfx.face.detect import FACE_OVAL, FaceDetector, face_scale
from vfx.face.rejuvenate import ClassicRejuvenator


@pytest.fixture(scope="module")
def biden():
    image = still("biden")
    return image, FaceDetector().detect(image)[0].landmarks


@pytest.mark.parametrize("footage", ["colour", "grainy black and white"])
def test_grey_hair_darkens_background_stays(biden, footage):
    image, lm = biden
    if footage != "colour":
        image = grainy_black_and_white(image[None], grain=10.0)[0]
    s = face_scale(lm)
    plain, hair = image.copy(), image.copy()
    ClassicRejuvenator(hair=False)(plain, lm, 1.0)
    ClassicRejuvenator(hair=True)(hair, lm, 1.0)
    luma = lambda x: x.astype(np.float32).mean(-1)  # noqa: E731
    top = lm[10]
    # The crown: a strip over the top of the head, where this photograph shows white hair.
    ys, xs = np.mgrid[0:image.shape[0], 0:image.shape[1]]
    oval = lm[FACE_OVAL]
    crown = (np.abs(xs - top[0]) < 0.35 * s) & (ys > top[1] - 0.95 * s) & (ys < top[1] - 0.55 * s)
    crown &= luma(image) > 170
    # Behind the head: beside the face at eye level, well outside it, inside the edited crop.
    left, right = oval[:, 0].min(), oval[:, 0].max()
    eyes = lm[[33, 263], 1].mean()
    behind = (np.abs(ys - eyes) < 0.4 * s) & (((xs < left - 0.5 * s) & (xs > left - 1.3 * s)) |
                                             ((xs > right + 0.5 * s) & (xs < right + 1.3 * s)))
    drop = float((luma(plain) - luma(hair))[crown].mean())
    moved = float(np.abs(luma(plain) - luma(hair))[behind].mean())
    print(f"\n{footage}: white hair on the crown {drop:.1f} grey levels darker ({crown.sum()} px); "
          f"behind the head changed {moved:.2f}")
    assert crown.sum() > 200 and behind.sum() > 200
    assert drop > 25
    assert moved < 1.5
