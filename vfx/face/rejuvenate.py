"""Consent-gated rejuvenation: make a granted face look younger, leave every other face untouched.

``classic`` (embedded default, CPU), what a VFX artist does for a de-age, driven by the landmarks:

- shape (``vfx.face.reshape``): jaw tightened, jowls lifted, chin a little shorter, eyes a little
  more open, by a smooth displacement field that follows the smoothed landmarks;
- texture, three frequency bands inside the skin mask (face oval minus eyes, brows and lips):
  the fine band (pores, film grain) is kept as it is, so skin never turns to plastic; the middle
  band (wrinkles, crow's feet, forehead lines, age spots) is cut, its dark creases much more than
  its highlights, most in the zones where lines are deepest; the coarse band (tone) is evened out
  and lifted where age shadows sit (under-eye bags, nasolabial folds, marionette lines);
- optionally (``hair``) grey hair, brows and beard near the face darkened to a young colour.

The mask's edge is feathered inside the face oval, so the outline of the face carries no seam.

``onnx``: an age-editing model run on a face crop aligned from the landmarks and pasted back
with a feathered mask; see ``vfx.face.onnx_backends``.
"""
from __future__ import annotations

from typing import Any, Protocol

import cv2
import numpy as np

from vfx.errors import VfxError
from vfx.face.detect import (FACE_OVAL, FOREHEAD, LEFT_BROW, LEFT_EYE, LIPS_OUTER, MOUTH_LEFT, MOUTH_RIGHT,
                             RIGHT_BROW, RIGHT_EYE, face_scale)
from vfx.face.hair import darken_grey_hair
from vfx.face.report import edit_granted_faces, finish_report
from vfx.face.reshape import reshape_face
from vfx.frames import Face, FrameBatch, ShotState, Step

OPERATION = "rejuvenate"
RIGHT_LOWER_LID = [33, 7, 163, 144, 145, 153, 154, 155, 133]
LEFT_LOWER_LID = [263, 249, 390, 373, 374, 380, 381, 382, 362]
NOSE_WINGS = (98, 327)  # right, left alar creases: where the nasolabial folds start
NOSE = [168, 6, 197, 195, 5, 4, 1, 19, 94, 2, 98, 327, 48, 278, 64, 294, 129, 358]  # bridge, tip, wings


class FaceEditor(Protocol):
    def __call__(self, image: np.ndarray, landmarks: np.ndarray, strength: float) -> None:
        """Edit one face in ``image`` (uint8 RGB, full frame) in place."""


def _poly(mask: np.ndarray, points: np.ndarray, value: float = 1.0) -> None:
    cv2.fillConvexPoly(mask, cv2.convexHull(np.round(points).astype(np.int32)), value, lineType=cv2.LINE_AA)


def skin_mask(shape: tuple[int, int], lm: np.ndarray) -> np.ndarray:
    """float32 [H,W] in 0..1: face oval shrunk off the outline, minus eyes, brows and lips, feathered."""
    s = face_scale(lm)
    oval = np.zeros(shape, np.float32)
    _poly(oval, lm[FACE_OVAL])
    oval = cv2.erode(oval, _disk(0.10 * s))
    holes = np.zeros(shape, np.float32)
    for group in (LEFT_EYE, RIGHT_EYE, LEFT_BROW, RIGHT_BROW, LIPS_OUTER):
        _poly(holes, lm[group])
    holes = cv2.dilate(holes, _disk(0.09 * s))
    mask = np.clip(oval - holes, 0.0, 1.0)
    return _feather(mask, 0.05 * s)


def wrinkle_zones(shape: tuple[int, int], lm: np.ndarray) -> np.ndarray:
    """float32 [H,W]: where lines are deepest with age: under-eye bags, nasolabial folds and
    marionette lines, crow's feet, forehead lines and the frown lines between the brows."""
    s = face_scale(lm)
    zones = np.zeros(shape, np.float32)
    for lid in (RIGHT_LOWER_LID, LEFT_LOWER_LID):
        lower = lm[lid]
        _poly(zones, np.concatenate([lower + (0, 0.06 * s), lower + (0, 0.32 * s)]))
    # Nasolabial and marionette folds: a broad, soft band, so a fold's whole shadow is lifted and no
    # light stripe is left along a band's edge where the fold runs wider than the line drawn for it.
    folds = np.zeros(shape, np.float32)
    width = max(2, int(0.26 * s))
    for wing, corner, jaw in ((NOSE_WINGS[0], MOUTH_LEFT, 172), (NOSE_WINGS[1], MOUTH_RIGHT, 397)):
        # 61/291 are the mouth corners on the image's left/right, matching the right/left nose wing.
        a, b = lm[wing], lm[corner]
        outward = np.sign(b[0] - lm[1, 0]) * 0.1 * s
        path = np.stack([a, (a + b) / 2 + (outward, 0), b + (outward, 0.05 * s), b + (lm[jaw] - b) * 0.45])
        cv2.polylines(folds, [np.round(path).astype(np.int32)], False, 1.0, width, cv2.LINE_AA)
    zones = np.maximum(zones, _feather(folds, 0.08 * s))
    for corner, side in ((33, -1.0), (263, 1.0)):  # crow's feet fan out from the outer eye corners
        centre = lm[corner] + (side * 0.22 * s, 0.02 * s)
        cv2.ellipse(zones, (int(centre[0]), int(centre[1])), (int(0.2 * s), int(0.26 * s)), 0, 0, 360, 1.0, -1, cv2.LINE_AA)
    brows = lm[LEFT_BROW + RIGHT_BROW]
    top = lm[FOREHEAD]
    _poly(zones, np.concatenate([brows - (0, 0.08 * s), [top + (0.6 * s, 0.1 * s), top + (-0.6 * s, 0.1 * s)]]))
    return _feather(zones, 0.07 * s)


def _disk(radius: float) -> np.ndarray:
    r = max(1, int(round(radius)))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def _feather(mask: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(mask, (0, 0), max(sigma, 0.5))


def _masked_blur(image: np.ndarray, mask: np.ndarray, sigma: float) -> np.ndarray:
    """Blur of ``image`` using only pixels under ``mask`` (no bleeding of hair or background)."""
    num = cv2.GaussianBlur(image * mask[..., None], (0, 0), sigma)
    den = cv2.GaussianBlur(mask, (0, 0), sigma)[..., None]
    return num / np.maximum(den, 1e-4)


class ClassicRejuvenator:
    """Reshape, then band-split skin retouch (and optional hair darkening) in a crop around the face."""

    crease_cut = 0.9  # share of the middle band's dark creases removed from all skin at strength 1
    bump_cut = 0.8  # share of its highlights removed (lines' raised rims, bags' edges)
    nose_keep = 0.4  # the nose's shading is its form, not wrinkles: its middle band is cut this much less
    zone_cut = 0.1  # extra crease removal in the wrinkle zones
    colour_cut = 0.7  # share of the middle band's colour (age spots, broken veins) removed
    shadow_lift = 1.0  # age shadows (bags, folds) lifted towards the surrounding skin tone
    tone_even = 0.4  # pull of the whole skin's tone towards its smooth average
    line_cut = 1.0  # share of a crease's thin dark line (fine band) removed in the wrinkle zones
    grain_gain = 0.15  # the fine band is lifted a touch: retouched skin tends to read soft

    def __init__(self, hair: bool = False):
        self.hair = hair

    def __call__(self, image: np.ndarray, landmarks: np.ndarray, strength: float) -> None:
        lm = reshape_face(image, landmarks, strength)
        s = face_scale(lm)
        x0, y0, x1, y1 = _crop_box(lm, image.shape, pad=(1.5 if self.hair else 0.6) * s)  # hair: the scalp too
        crop = image[y0:y1, x0:x1].astype(np.float32)
        lm = lm - (x0, y0)
        skin = skin_mask(crop.shape[:2], lm)
        zones = wrinkle_zones(crop.shape[:2], lm) * skin
        nose = np.zeros(crop.shape[:2], np.float32)
        _poly(nose, lm[NOSE])
        nose = _feather(nose, 0.06 * s)
        edited = self._retouch(crop, skin, zones, s, strength, nose)
        if self.hair:
            edited = darken_grey_hair(edited, lm, skin, strength)
        image[y0:y1, x0:x1] = np.clip(np.round(edited), 0, 255).astype(np.uint8)

    def _retouch(self, crop: np.ndarray, skin: np.ndarray, zones: np.ndarray, s: float, strength: float,
                 nose: np.ndarray) -> np.ndarray:
        fine_sigma = max(0.7, 0.012 * s)
        smooth = cv2.GaussianBlur(crop, (0, 0), fine_sigma)
        fine = crop - smooth
        coarse = _masked_blur(smooth, np.maximum(skin, 1e-3), 0.1 * s)
        middle = smooth - coarse
        luma = middle.mean(-1, keepdims=True)
        colour = middle - luma
        crease = np.where(luma < 0, self.crease_cut + self.zone_cut * zones[..., None], self.bump_cut)
        area = (skin * strength)[..., None]
        form = area * (1 - self.nose_keep * nose)[..., None]
        middle = luma * (1 - np.clip(crease, 0, 1) * form) + colour * (1 - self.colour_cut * area)

        tone = _masked_blur(coarse, np.maximum(skin, 1e-3), 0.3 * s)
        lift = np.maximum(tone - coarse, 0.0) * (self.shadow_lift * zones * strength)[..., None]
        coarse = coarse + (tone - coarse) * (self.tone_even * area) + lift
        # A deep crease keeps a thin dark line in the fine band once its shadow is gone; grain averages
        # out under a small blur, a line does not, so the blurred fine band's dark part is the line.
        line = np.minimum(cv2.GaussianBlur(fine.mean(-1), (0, 0), 2 * fine_sigma), 0.0)
        fine = fine - (self.line_cut * zones * strength * line)[..., None]
        return coarse + middle + fine * (1 + self.grain_gain * area)


def _crop_box(lm: np.ndarray, shape, pad: float) -> tuple[int, int, int, int]:
    h, w = shape[:2]
    x0, y0 = np.floor(lm.min(0) - pad).astype(int)
    x1, y1 = np.ceil(lm.max(0) + pad).astype(int)
    return max(0, x0), max(0, y0), min(w, x1), min(h, y1)


class Rejuvenate(Step):
    """Step: rejuvenate every face of ``batch.faces`` granted ``rejuvenate``; others stay pixel-identical."""

    name = "rejuvenate"
    operation = OPERATION

    def __init__(self, gate: Any, strength: float, backend: str = "classic", model_path: str | None = None,
                 workers: int = 2, hair: bool = False):
        if not 0.0 <= strength <= 1.0:
            raise VfxError(f"--rejuvenate {strength}: strength must be between 0 and 1")
        self.gate = gate
        self.strength = float(strength)
        self.backend = backend
        self.hair = hair
        self.editor = make_rejuvenator(backend, model_path, hair)
        self.workers = workers
        self.model_hashes: dict[str, str] = getattr(self.editor, "model_hashes", {})

    def __call__(self, batch: FrameBatch, shot: ShotState) -> FrameBatch:
        def edit(frame: np.ndarray, face: Face, i: int) -> None:
            if self.strength > 0.0:
                self.editor(frame, face.landmarks, self.strength)

        return edit_granted_faces(self.name, self.operation, batch, shot, edit, self.workers, gate=self.gate)

    def finish(self, shot: ShotState) -> dict | None:
        """The shot's summary (frames edited, not found, refused per subject), recorded with the gate."""
        return finish_report(self.gate, shot, self.name, self.operation)


def make_rejuvenator(backend: str, model_path: str | None = None, hair: bool = False) -> FaceEditor:
    if backend == "classic":
        return ClassicRejuvenator(hair=hair)
    if backend == "onnx":
        if not model_path:
            raise VfxError("rejuvenate backend 'onnx' needs a model file from the model store (model_path)")
        from vfx.face.onnx_backends import OnnxRejuvenator

        return OnnxRejuvenator(model_path)
    raise VfxError(f"rejuvenate backend {backend!r}: choose classic or onnx")
