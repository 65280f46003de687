"""The opened mouth's shape on a real photograph (biden.jpg): a lens from the inner lips, pinched at
the corners and no wider than the lips; the lower lip carried (its texture kept) and the jaw dropped."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from face_helpers import still
from vfx.face.audio import Phone
from vfx.face.detect import CHIN, NOSE_TIP, FaceDetector, face_scale
from vfx.face.lipsync import ClassicMouthWarp, MouthTrack
from vfx.face.mouth import LOWER_INNER, UPPER_INNER, MouthFrame


@pytest.fixture(scope="module")
def opened():
    image = still("biden")
    detector = FaceDetector()
    lm = detector.detect(image)[0].landmarks
    out = image.copy()
    ClassicMouthWarp()(out, lm, 0.0, 1.0, 0.0)
    return image, lm, out, detector.detect(out)[0].landmarks


def test_opening_is_a_lens_no_wider_than_the_lips(opened):
    image, lm, out, lm_out = opened
    mouth = MouthFrame.of(lm_out)
    centre = float(mouth.gap(np.float32([mouth.middle]))[0])
    sides = mouth.gap(np.float32([mouth.middle - 0.65 * (mouth.right - mouth.left) / 2,
                                  mouth.middle + 0.65 * (mouth.right - mouth.left) / 2]))
    print(f"\nopened mouth: centre gap {centre / mouth.scale:.2f} eye distances, at 65% out to the corners "
          f"{(sides / centre).round(2)} of it; opening width {(mouth.right - mouth.left) / mouth.width:.2f} of the lips'")
    assert centre > 0.15 * mouth.scale, "the mouth opened"
    assert sides.max() < 0.82 * centre, "pinched towards the corners, not a box (the old box: 0.85)"
    assert mouth.right - mouth.left <= 1.02 * mouth.width


def test_jaw_drops_and_lower_lip_keeps_its_texture(opened):
    image, lm, out, lm_out = opened
    s = face_scale(lm)
    drop = float(np.linalg.norm(lm_out[CHIN] - lm_out[NOSE_TIP]) - np.linalg.norm(lm[CHIN] - lm[NOSE_TIP])) / s
    # The lower lip (outer line to inner line) before, and where the warp carried it.
    grey = [cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).astype(np.float32) for x in (image, out)]
    energy = []
    for g, points in zip(grey, (lm, lm_out)):
        lip = np.zeros(g.shape, np.uint8)
        outer = points[[61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291]]
        cv2.fillPoly(lip, [np.round(np.concatenate([outer, points[LOWER_INNER][::-1]])).astype(np.int32)], 1)
        lip = cv2.erode(lip, np.ones((3, 3), np.uint8)) > 0
        energy.append(float(np.mean(cv2.Laplacian(g, cv2.CV_32F)[lip] ** 2)))
    print(f"\nchin drop {drop:.2f} eye distances; lower lip detail kept {energy[1] / energy[0]:.2f}")
    assert drop > 0.08
    assert energy[1] >= 0.5 * energy[0]  # the old stretch kept 0.22


def test_visemes_blend_without_snapping():
    """Phones switch every 250 ms between a closed (M) and a wide open (AA) viseme under a steady tone;
    the opening moves between them smoothly (no step over a fifth of the change between 1 ms samples)."""
    phones = [Phone("M" if k % 2 else "AA", 0.25 * k, 0.25 * (k + 1)) for k in range(8)]
    samples = (0.5 * np.sin(np.arange(32000) * 2 * np.pi * 220 / 16000)).astype(np.float32)
    track = MouthTrack(samples, phones)
    times = np.arange(0.1, 1.9, 0.001)
    opening, _ = track.targets(times, 24.0)
    assert opening.max() - opening.min() > 0.3
    assert np.abs(np.diff(opening)).max() < 0.2 * (opening.max() - opening.min())
