"""Grey hair, brows and beard around a face: where they are, and darkening them to a young colour.

The mask is built from what grey hair is, inside where it can be:

- where: a head region grown from the landmarks (the face oval pushed out, most towards the top of
  the head, for hairline, temples and scalp; the oval itself for beard and stubble) plus the brows;
- what: little colour (low chroma in Lab, far from the skin's own chroma, so skin is left out by its
  colour, not by a shape) and at least as bright as the skin; in black-and-white footage colour says
  nothing, so brightness above the skin's decides there;
- the person: mediapipe's selfie segmentation (bundled) tells the head, hair included, from the
  wall or curtain behind it, which can be as grey and bright as white hair;
- texture: hair has strands; an out-of-focus background does not, so regions much smoother than
  the skin are not hair;
- connected: only blobs touching the face's rim count, so a white background patch that happens to
  be grey, bright and inside the region is left alone.
"""
from __future__ import annotations

import cv2
import numpy as np

from vfx.face.detect import FACE_OVAL, LEFT_BROW, LIPS_OUTER, NOSE_TIP, RIGHT_BROW, face_scale
from vfx.segment.person import SELFIE

YOUNG_BROWN = np.array([0.55, 0.42, 0.32], np.float32)  # young brown hair's colour relative to its brightness
DARKEN = 0.45  # grey hair's brightness is scaled to this
COVER = 0.85
GREY_LIGHT = 110.0  # Lab lightness (0..255) below which hair is dark, whatever the skin  # how much of a fully grey pixel is replaced at strength 1


def _poly(mask: np.ndarray, points: np.ndarray, value: float = 1.0) -> None:
    cv2.fillConvexPoly(mask, cv2.convexHull(np.round(points).astype(np.int32)), value, lineType=cv2.LINE_AA)


def head_region(shape: tuple[int, int], lm: np.ndarray) -> np.ndarray:
    """float32 [H,W] 0/1: face, hairline, temples, scalp and beard, grown from the landmarks."""
    region = np.zeros(shape, np.float32)
    oval = lm[FACE_OVAL]
    centre = lm[NOSE_TIP]
    ex = lm[263] - lm[33]
    ex = ex / max(float(np.linalg.norm(ex)), 1e-3)
    up = np.array([ex[1], -ex[0]], np.float32)  # towards the top of the head
    height = max(float(np.linalg.norm(oval[0] - centre)), 1.0)
    grow = 1.3 + 0.8 * np.clip((oval - centre) @ up / height, 0, 1)
    _poly(region, centre + (oval - centre) * grow[:, None])
    for brow in (LEFT_BROW, RIGHT_BROW):
        _poly(region, lm[brow])
    return region


def person_probability(crop: np.ndarray) -> np.ndarray:
    """float32 [H,W]: mediapipe selfie segmentation (bundled in the wheel) on the head crop: the
    person, hair included, against the background."""
    rgb = np.ascontiguousarray(np.clip(crop, 0, 255).astype(np.uint8))
    with SELFIE[0].lend() as model:  # the person matte's graphs, lent (vfx/parallel.py Lender)
        return model.process(rgb).segmentation_mask.astype(np.float32)


def _disk(radius: float) -> np.ndarray:
    r = max(1, int(round(radius)))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def hair_zones(shape: tuple[int, int], lm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where hair can be, 0/1 float32 [H,W] each: outside the face (scalp, hairline, temples; the
    face's own rim left out, where rim light is as white as grey hair) with the brows, and the beard
    and moustache zone inside the lower face, away from its edge."""
    s = face_scale(lm)
    oval = np.zeros(shape, np.float32)
    _poly(oval, lm[FACE_OVAL])
    scalp = np.clip(head_region(shape, lm) - cv2.dilate(oval, _disk(0.1 * s)), 0, 1)
    ex = lm[263] - lm[33]
    ex = ex / max(float(np.linalg.norm(ex)), 1e-3)
    down = np.array([-ex[1], ex[0]], np.float32)
    ys, xs = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
    below_nose = (xs - lm[NOSE_TIP][0]) * down[0] + (ys - lm[NOSE_TIP][1]) * down[1]
    scalp = scalp * (below_nose < 0.3 * s)  # sideburns reach the ears; a white collar is not hair
    for brow in (LEFT_BROW, RIGHT_BROW):
        _poly(scalp, lm[brow])
    beard = cv2.erode(oval, _disk(0.08 * s)) * (below_nose > 0.05 * s)
    mouth = np.zeros(shape, np.float32)
    _poly(mouth, lm[LIPS_OUTER])
    beard = beard * (1 - cv2.dilate(mouth, _disk(0.04 * s)))  # teeth are white and grey too
    return scalp, beard


def hair_mask(crop: np.ndarray, lm: np.ndarray, skin: np.ndarray) -> np.ndarray:
    """float32 [H,W] 0..1: grey or white hair, brows and beard of the face at ``lm`` in ``crop`` (RGB float)."""
    s = face_scale(lm)
    h, w = crop.shape[:2]
    light, chroma, skin_light, skin_chroma = _lab_stats(crop, skin)
    colour = skin_chroma > 6.0
    scalp, beard = hair_zones((h, w), lm)
    bright = np.clip((light - 0.9 * skin_light) / (0.12 * skin_light + 1.0), 0, 1)
    bright = bright * np.clip((light - GREY_LIGHT) / 30.0, 0, 1)  # grey is light in itself, not only beside dark skin
    if colour:  # grey is far from the skin's colour: skin is left out by its colour
        grey = np.clip((0.75 * skin_chroma - chroma) / (0.35 * skin_chroma), 0, 1)
        region = np.maximum(scalp, beard)
    else:  # black and white: only what is clearly brighter than the skin, and no skin shape
        grey = np.clip((light - 1.1 * skin_light) / (0.1 * skin_light + 1.0), 0, 1)
        region = np.maximum(scalp, beard) * np.clip(1.0 - skin, 0, 1)
    detail = light - cv2.GaussianBlur(light, (0, 0), max(1.0, 0.015 * s))
    texture = np.sqrt(cv2.GaussianBlur(detail * detail, (0, 0), max(1.5, 0.04 * s)))
    core = skin > 0.5
    skin_texture = float(np.median(texture[core])) if core.any() else 1.0
    stranded = np.clip((texture / max(skin_texture, 1e-3) - 0.25) / 0.5, 0, 1)
    person = np.clip((person_probability(crop) - 0.3) / 0.4, 0, 1)  # not the wall or curtain behind the head
    soft = bright * grey * stranded * region * person
    # Only blobs that touch the face's rim or the brows: hair grows from the head.
    rim = np.zeros((h, w), np.uint8)
    _poly(rim, lm[FACE_OVAL])
    rim = cv2.dilate(rim, _disk(0.15 * s))
    candidates = (soft > 0.2).astype(np.uint8)
    count, labels = cv2.connectedComponents(cv2.dilate(candidates, np.ones((3, 3), np.uint8)))
    touching = np.unique(labels[(rim > 0) & (candidates > 0)])
    mask = soft * np.isin(labels, touching[touching > 0])
    return cv2.GaussianBlur(mask, (0, 0), max(1.0, 0.02 * s))


def _lab_stats(crop: np.ndarray, skin: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Lab lightness and chroma per pixel, and the skin's median of each."""
    lab = cv2.cvtColor(np.clip(crop, 0, 255).astype(np.uint8), cv2.COLOR_RGB2LAB).astype(np.float32)
    light, chroma = lab[..., 0], np.hypot(lab[..., 1] - 128, lab[..., 2] - 128)
    core = skin > 0.5
    if not core.any():
        return light, chroma, 128.0, 0.0
    return light, chroma, float(np.median(light[core])), float(np.median(chroma[core]))


def darken_grey_hair(crop: np.ndarray, lm: np.ndarray, skin: np.ndarray, strength: float) -> np.ndarray:
    """Grey hair towards a young dark brown, keeping its own light and shade (strands, highlights)."""
    mask = hair_mask(crop, lm, skin)
    colour = _lab_stats(crop, skin)[3] > 6.0
    # Darken the hair's body and keep its strands and grain at full strength: scaling the detail down
    # with the colour is what makes darkened hair look painted on.
    body = cv2.GaussianBlur(crop, (0, 0), max(1.0, 0.015 * face_scale(lm)))
    luma = body.mean(-1, keepdims=True)
    shaded = (luma * DARKEN * (YOUNG_BROWN / YOUNG_BROWN.mean()) if colour else body * DARKEN) + (crop - body)
    a = (COVER * strength * mask)[..., None]
    return crop * (1 - a) + shaded * a
