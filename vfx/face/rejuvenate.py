"""Consent-gated rejuvenation: make a granted face look younger, leave every other face untouched.

``classic`` (embedded default, CPU): a skin mask from the landmarks (face oval minus eyes, brows
and lips), an edge-preserving frequency separation whose detail band is attenuated (wrinkles and
fine lines), extra softening and shadow lifting under the eyes and along the nasolabial folds,
and a gentle evening of skin tone. Eyes, lips and the outline of the face are outside the mask,
so they keep their shape.

``onnx``: an age-editing model run on a face crop aligned from the landmarks and pasted back
with a feathered mask; see ``vfx.face.onnx_backends``.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import cv2
import numpy as np

from vfx.errors import VfxError
from vfx.face.decisions import TrackConsent, finish_consent
from vfx.face.detect import (FACE_OVAL, LEFT_BROW, LEFT_EYE, LIPS_OUTER, MOUTH_LEFT, MOUTH_RIGHT, RIGHT_BROW,
                             RIGHT_EYE, face_scale)
from vfx.face.tracks import DetectFaces
from vfx.frames import Face, FrameBatch, ShotState, Step

OPERATION = "rejuvenate"
RIGHT_LOWER_LID = [33, 7, 163, 144, 145, 153, 154, 155, 133]
LEFT_LOWER_LID = [263, 249, 390, 373, 374, 380, 381, 382, 362]
NOSE_WINGS = (98, 327)  # right, left alar creases: where the nasolabial folds start


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
    """float32 [H,W]: under-eye bags and nasolabial folds, where lines are deepest with age."""
    s = face_scale(lm)
    zones = np.zeros(shape, np.float32)
    for lid in (RIGHT_LOWER_LID, LEFT_LOWER_LID):
        lower = lm[lid]
        _poly(zones, np.concatenate([lower + (0, 0.06 * s), lower + (0, 0.32 * s)]))
    for wing, corner in ((NOSE_WINGS[0], MOUTH_LEFT), (NOSE_WINGS[1], MOUTH_RIGHT)):
        # 61/291 are the mouth corners on the image's left/right, matching the right/left nose wing.
        a, b = lm[wing], lm[corner]
        outward = np.sign(b[0] - lm[1, 0]) * 0.08 * s
        path = np.stack([a, (a + b) / 2 + (outward, 0), b + (outward, 0.05 * s)])
        cv2.polylines(zones, [np.round(path).astype(np.int32)], False, 1.0, max(2, int(0.16 * s)), cv2.LINE_AA)
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
    """Landmark-masked frequency separation; all work happens in a crop around the face."""

    detail_cut = 0.85  # share of the skin's detail band removed at strength 1
    zone_smooth = 0.75  # extra pull of under-eye/nasolabial tone towards the surrounding skin
    tone_even = 0.35  # pull of the whole skin's tone towards its smooth average

    def __call__(self, image: np.ndarray, landmarks: np.ndarray, strength: float) -> None:
        s = face_scale(landmarks)
        x0, y0, x1, y1 = _crop_box(landmarks, image.shape, pad=0.35 * s)
        crop = image[y0:y1, x0:x1].astype(np.float32)
        lm = landmarks - (x0, y0)
        skin = skin_mask(crop.shape[:2], lm)
        zones = wrinkle_zones(crop.shape[:2], lm) * skin

        radius = max(2, int(round(0.07 * s)))
        base = cv2.ximgproc.guidedFilter(crop, crop, radius, (0.06 * 255) ** 2)
        detail = crop - base
        tone = _masked_blur(base, skin, 0.30 * s)
        pull = (self.tone_even * skin + self.zone_smooth * zones) * strength
        base = base + (tone - base) * pull[..., None]
        keep = 1.0 - self.detail_cut * strength * np.clip(skin + zones, 0.0, 1.0)
        edited = base + detail * keep[..., None]

        touched = skin > 1e-3
        out = image[y0:y1, x0:x1]
        out[touched] = np.clip(np.round(edited[touched]), 0, 255).astype(np.uint8)


def _crop_box(lm: np.ndarray, shape, pad: float) -> tuple[int, int, int, int]:
    h, w = shape[:2]
    x0, y0 = np.floor(lm.min(0) - pad).astype(int)
    x1, y1 = np.ceil(lm.max(0) + pad).astype(int)
    return max(0, x0), max(0, y0), min(w, x1), min(h, y1)


def protect_region(face: Face, shape, pad: float = 0.15) -> tuple[int, int, int, int]:
    """The rectangle that must stay pixel-identical for a face that may not be edited."""
    x, y, w, h = face.box
    h_img, w_img = shape[:2]
    return (max(0, int(x - pad * w)), max(0, int(y - pad * h)),
            min(w_img, int(np.ceil(x + (1 + pad) * w))), min(h_img, int(np.ceil(y + (1 + pad) * h))))


def find_and_decide(faces: DetectFaces, gate: Any, operation: str, batch: FrameBatch, shot: ShotState) -> None:
    """Detect and track the batch's faces, then let the gate decide ``operation`` for each track."""
    faces(batch, shot)
    consent = shot.steps.setdefault(f"{operation}.consent", TrackConsent(operation))
    consent.decide(gate, batch, DetectFaces.tracks(shot), shot)


def edit_granted_faces(step_name: str, operation: str, batch: FrameBatch, edit, workers: int = 2) -> FrameBatch:
    """Run ``edit(frame_out, face, i)`` on granted faces across the batch in a thread pool, then copy
    the step's input pixels back over every face that is not granted, so those stay identical."""
    frames_in = batch.frames
    out = frames_in.copy()

    def one(i: int) -> None:
        faces = batch.faces[i]
        for face in faces:
            if operation in face.allowed_ops:
                edit(out[i], face, i)
        for face in faces:
            if operation not in face.allowed_ops:
                x0, y0, x1, y1 = protect_region(face, out[i].shape)
                out[i, y0:y1, x0:x1] = frames_in[i, y0:y1, x0:x1]

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, range(len(batch))))
    if batch.source is None:
        batch.source = frames_in
    batch.frames = out
    return batch


class Rejuvenate(Step):
    """Step: rejuvenate every face whose track holds a ``rejuvenate`` grant; others stay pixel-identical."""

    name = "rejuvenate"
    operation = OPERATION

    def __init__(self, gate: Any, strength: float, backend: str = "classic", model_path: str | None = None,
                 workers: int = 2, faces: DetectFaces | None = None):
        if not 0.0 <= strength <= 1.0:
            raise VfxError(f"--rejuvenate {strength}: strength must be between 0 and 1")
        self.gate = gate
        self.strength = float(strength)
        self.backend = backend
        self.editor = make_rejuvenator(backend, model_path)
        self.workers = workers
        self.faces = faces or DetectFaces()

    def __call__(self, batch: FrameBatch, shot: ShotState) -> FrameBatch:
        find_and_decide(self.faces, self.gate, self.operation, batch, shot)
        if self.strength == 0.0:
            return batch
        return edit_granted_faces(self.name, self.operation, batch,
                                  lambda frame, face, i: self.editor(frame, face.landmarks, self.strength), self.workers)

    def finish(self, shot: ShotState) -> dict | None:
        """Record the shot's summary (frames edited/refused per subject, grant ids) with the gate."""
        return finish_consent(self.gate, shot, self.name, self.operation)


def make_rejuvenator(backend: str, model_path: str | None = None) -> FaceEditor:
    if backend == "classic":
        return ClassicRejuvenator()
    if backend == "onnx":
        if not model_path:
            raise VfxError("rejuvenate backend 'onnx' needs a model file from the model store (model_path)")
        from vfx.face.onnx_backends import OnnxRejuvenator

        return OnnxRejuvenator(model_path)
    raise VfxError(f"rejuvenate backend {backend!r}: choose classic or onnx")
