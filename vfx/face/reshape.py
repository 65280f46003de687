"""Landmark-driven face reshaping for de-aging: a smooth displacement field, in place.

With age the jawline softens into jowls, the lower face lengthens and the eyes look smaller under
heavier lids. The field moves the lower face oval in and up (tighter jaw, lifted jowls, a slightly
shorter chin) and opens the eyes a little. Displacements are defined on landmarks, so they follow
the One-Euro smoothed landmarks and stay still when the face is still (no sliding warp); they are
spread by normalised Gaussian weights and fade to zero well outside the face, so the face's outline
moves without a seam.
"""
from __future__ import annotations

import cv2
import numpy as np

from vfx.face.detect import CHIN, FACE_OVAL, LEFT_EYE, NOSE_TIP, RIGHT_EYE, face_scale

JAW = [361, 288, 397, 365, 379, 378, 400, 377, 152, 148, 176, 149, 150, 136, 172, 58, 132]
JOWLS = {397: 1.0, 365: 1.0, 379: 0.8, 172: 1.0, 136: 1.0, 150: 0.8, 288: 0.6, 58: 0.6}
NARROW = 0.06  # jaw width removed at strength 1
LIFT = 0.07  # jowl lift at strength 1, in eye distances
CHIN_UP = 0.05  # chin raise at strength 1, in eye distances
EYE_OPEN = 0.07  # eye enlargement at strength 1


def _axes(lm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors across (eye to eye) and down the face."""
    ex = lm[263] - lm[33]
    ex = ex / max(float(np.linalg.norm(ex)), 1e-3)
    ey = np.array([-ex[1], ex[0]], np.float32)
    if np.dot(lm[CHIN] - lm[NOSE_TIP], ey) < 0:
        ey = -ey
    return ex.astype(np.float32), ey


def control_points(lm: np.ndarray, strength: float) -> tuple[np.ndarray, np.ndarray]:
    """Points [N,2] and where they move [N,2]: jaw in and up, eyes open, anchors still."""
    s = face_scale(lm)
    ex, ey = _axes(lm)
    centre = lm[NOSE_TIP]
    points, moves = [], []
    for i in JAW:
        across = float(np.dot(lm[i] - centre, ex))
        move = -NARROW * across * ex - LIFT * s * JOWLS.get(i, 0.0) * ey
        if i == CHIN:
            move = move - CHIN_UP * s * ey
        points.append(lm[i])
        moves.append(move * strength)
    for eye in (LEFT_EYE, RIGHT_EYE):
        middle = lm[eye].mean(0)
        for i in eye:
            points.append(lm[i])
            moves.append((lm[i] - middle) * EYE_OPEN * strength)
    # Still anchors: nose, mouth corners, brows' line, and a ring well outside the face.
    for i in (NOSE_TIP, 168, 61, 291, 0, 17, 105, 334):
        points.append(lm[i])
        moves.append(np.zeros(2, np.float32))
    oval = lm[FACE_OVAL]
    ring = centre + (oval - centre) * 1.6
    points.extend(ring)
    moves.extend(np.zeros_like(ring))
    return np.asarray(points, np.float32), np.asarray(moves, np.float32)


def displacement(points: np.ndarray, moves: np.ndarray, xy: np.ndarray, sigma: float) -> np.ndarray:
    """Normalised Gaussian interpolation of ``moves`` at ``xy`` [M,2] -> [M,2]."""
    d2 = ((xy[:, None, :] - points[None, :, :]) ** 2).sum(-1)
    w = np.exp(-d2 / (2 * sigma * sigma))
    return (w @ moves) / (w.sum(1, keepdims=True) + 1e-6)


def reshape_face(image: np.ndarray, lm: np.ndarray, strength: float) -> np.ndarray:
    """Warp ``image`` (uint8 RGB, full frame) in place; returns the landmarks moved with it."""
    if strength <= 0:
        return lm
    s = face_scale(lm)
    points, moves = control_points(lm, strength)
    sigma = 0.35 * s
    h, w = image.shape[:2]
    x0, y0 = np.floor(points.min(0)).astype(int).clip(0)
    x1, y1 = np.ceil(points.max(0)).astype(int) + 1
    x1, y1 = min(w, x1), min(h, y1)
    if x1 - x0 < 4 or y1 - y0 < 4:
        return lm
    step = max(1, int(s / 24))  # the field is smooth: evaluate it on a coarse grid, then resize
    gx, gy = np.meshgrid(np.arange(x0, x1, step, dtype=np.float32), np.arange(y0, y1, step, dtype=np.float32))
    field = displacement(points, moves, np.stack([gx.ravel(), gy.ravel()], 1), sigma).reshape(*gx.shape, 2)
    field = cv2.resize(field, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
    xs, ys = np.meshgrid(np.arange(x0, x1, dtype=np.float32), np.arange(y0, y1, dtype=np.float32))
    # Output pixel x shows the source at x - field(x): small, smooth fields invert this way.
    warped = cv2.remap(image, xs - field[..., 0], ys - field[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    image[y0:y1, x0:x1] = warped
    return (lm + displacement(points, moves, lm, sigma)).astype(np.float32)
