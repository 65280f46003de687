"""Composites whose true alpha is known: a real cut-out moving over real footage under camera motion.

The background is a window panning and zooming across vtest.avi; the subject is a region of
messi5.jpg with an alpha we choose (hard, or with a hair-like fringe and a feathered rim).
"""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from conftest import SAMPLES
from video_helpers import write_sequence
from vfx.video import FrameRange, FrameReader, probe

SIZE = (480, 360)  # w, h


def photo_patch() -> np.ndarray:
    photo = cv2.cvtColor(cv2.imread(str(SAMPLES / "messi5.jpg")), cv2.COLOR_BGR2RGB)
    return cv2.resize(photo[40:300, 180:420], (110, 120))


def portrait_patch() -> np.ndarray:
    """A head and shoulders (obama2.jpg): a subject the person model takes for a person."""
    photo = cv2.cvtColor(cv2.imread(str(SAMPLES / "obama2.jpg")), cv2.COLOR_BGR2RGB)
    return cv2.resize(photo[100:700, 50:580], (110, 120))


def hard_shape() -> np.ndarray:
    mask = np.zeros((120, 110), np.uint8)
    cv2.ellipse(mask, (55, 45), (40, 40), 0, 0, 360, 1, -1)
    cv2.fillPoly(mask, [np.array([[20, 60], [95, 55], [105, 118], [8, 115]])], 1)
    return mask.astype(bool)


def soft_subject(seed: int = 3, hair: tuple[int, int, int] = (38, 28, 22)) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """The cut-out with dark hair strands above the head and a rim feathered over ~4 px.

    Returns the subject colour, its true alpha (float32) and the top-left offset of the
    subject inside the padded canvas (strands reach beyond the head).
    """
    pad = 24
    h, w = 120 + pad, 110 + 2 * pad
    colour = np.zeros((h, w, 3), np.float32)
    colour[pad:, pad:pad + 110] = photo_patch()
    body = np.zeros((h, w), np.float32)
    body[pad:, pad:pad + 110] = hard_shape()
    rim = cv2.GaussianBlur(body, (0, 0), 1.5)
    alpha = np.where(body > 0, np.maximum(rim, 0.5 + 0.5 * rim), rim)  # soft both sides of the outline
    alpha = np.clip((alpha - 0.5) * 1.0 + 0.5, 0, 1)
    # strands drawn at 4x and shrunk: thin, anti-aliased, fractional coverage like real hair
    big = np.zeros((h * 4, w * 4), np.uint8)
    rng = np.random.default_rng(seed)
    cx, cy = (pad + 55) * 4, (pad + 45) * 4
    for angle in rng.uniform(-2.6, -0.55, 60):
        r0 = 36 * 4
        length = rng.uniform(10, 22) * 4
        x0, y0 = cx + r0 * np.cos(angle), cy + r0 * np.sin(angle)
        bend = rng.uniform(-0.25, 0.25)
        x1, y1 = x0 + length * np.cos(angle + bend), y0 + length * np.sin(angle + bend)
        cv2.line(big, (int(x0), int(y0)), (int(x1), int(y1)), 255, 3, cv2.LINE_AA)
    strands = cv2.resize(big, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    hair = np.array(hair, np.float32)
    colour = np.where((strands > 0)[..., None] & (body == 0)[..., None], hair, colour)
    alpha = np.maximum(alpha, strands)
    return colour, alpha.astype(np.float32), (pad, pad)


def background(frames: int, start: int = 200, video: str = "vtest.avi", size: tuple[int, int] = SIZE) -> list[np.ndarray]:
    """Real footage (vtest.avi) seen by a camera that pushes in while it pans right and down, at ``size`` (w, h)."""
    info = probe(SAMPLES / video)
    out = []
    for t, source in enumerate(f for _, f in FrameReader(info, FrameRange(start, start + frames - 1)).frames()):
        zoom = 1.0 + 0.004 * t
        w, h = int(560 / zoom), int(420 / zoom)
        x0, y0 = 20 + 3 * t, 10 + int(1.5 * t)
        out.append(cv2.resize(source[y0:y0 + h, x0:x0 + w], size, interpolation=cv2.INTER_AREA))
    return out


def position(t: int) -> tuple[int, int]:
    return 60 + 6 * t, 80 + int(60 * np.sin(t / 8))


def compose(frame: np.ndarray, colour: np.ndarray, alpha: np.ndarray, x: int, y: int) -> tuple[np.ndarray, np.ndarray]:
    """``frame`` with the subject laid over at (x, y); returns the picture and the full-frame true alpha."""
    truth = np.zeros(frame.shape[:2], np.float32)
    h, w = alpha.shape
    H, W = truth.shape
    x0, y0, x1, y1 = max(0, x), max(0, y), min(W, x + w), min(H, y + h)
    truth[y0:y1, x0:x1] = alpha[y0 - y:y1 - y, x0 - x:x1 - x]
    layer = np.zeros(frame.shape, np.float32)
    layer[y0:y1, x0:x1] = colour[y0 - y:y1 - y, x0 - x:x1 - x]
    a = truth[..., None]
    picture = np.clip(a * layer + (1 - a) * frame.astype(np.float32) + 0.5, 0, 255).astype(np.uint8)
    return picture, truth


def soft_clip(folder, frames: int, start: int | None = None, video: str | None = None,
              hair: tuple[int, int, int] = (38, 28, 22)) -> tuple[str, np.ndarray, list[tuple[int, int]]]:
    """A sequence of the soft-edged subject moving over the moving background (``background``'s footage
    unless ``video`` / ``start`` say which), with its true alpha."""
    colour, alpha, (ox, oy) = soft_subject(hair=hair)
    pictures, truths, corners = [], [], []
    footage = background(frames) if video is None else background(frames, start if start is not None else 200, video)
    for t, frame in enumerate(footage):
        px, py = position(t)
        picture, truth = compose(frame, colour, alpha, px - ox, py - oy)
        pictures.append(picture)
        truths.append(truth)
        corners.append((px, py))
    return write_sequence(folder, np.stack(pictures), first=0, pattern="soft.%04d.png"), np.stack(truths), corners


def hard_clip_frames(frames: int, start: int, offset: tuple[int, int] = (0, 0), video: str = "vtest.avi",
                     patch: np.ndarray | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The hard-edged cut-out (of ``patch``, messi5.jpg's unless given) moving over the moving background that
    starts at frame ``start`` of ``video``."""
    colour = np.zeros((120, 110, 3), np.float32)
    colour[:] = photo_patch() if patch is None else patch
    alpha = hard_shape().astype(np.float32)
    pictures, truths = [], []
    for t, frame in enumerate(background(frames, start, video)):
        px, py = position(t)
        picture, truth = compose(frame, colour, alpha, px + offset[0], py + offset[1])
        pictures.append(picture)
        truths.append(truth > 0.5)
    return pictures, truths


def occluder_offset(t: int) -> int | None:
    """Horizontal offset of the occluder from where it hides the subject fully (frames 12-21); None: out of the picture."""
    if 12 <= t <= 21:
        return 0
    if 9 <= t < 12:
        return -(12 - t) * 60  # slides in from the left
    if 21 < t <= 24:
        return (t - 21) * 60  # and out to the right
    return None


def occluded_clip(folder, frames: int = 34, twin: tuple[int, int] | None = None,
                  path: Callable[[int], tuple[int, int]] = position) -> tuple[str, np.ndarray]:
    """The hard cut-out moving along ``path``, hidden for 10 frames by a real foreground object (a piece of
    building.jpg) that passes over it; with ``twin``, a second copy of the cut-out stands still at that corner, in
    sight all along (not the subject)."""
    colour = np.zeros((120, 110, 3), np.float32)
    colour[:] = photo_patch()
    alpha = hard_shape().astype(np.float32)
    building = cv2.cvtColor(cv2.imread(str(SAMPLES / "building.jpg")), cv2.COLOR_BGR2RGB)
    occluder = cv2.resize(building[:300, :280], (150, 160)).astype(np.float32)
    pictures, truths = [], []
    for t, frame in enumerate(background(frames)):
        px, py = path(t)
        picture, truth = compose(frame, colour, alpha, px, py)
        if twin is not None:
            picture, _ = compose(picture, colour, alpha, *twin)
        offset = occluder_offset(t)
        if offset is not None:
            picture, cover = compose(picture, occluder, np.ones((160, 150), np.float32), px - 20 + offset, py - 20)
            truth = truth * (1 - cover)
        pictures.append(picture)
        truths.append(truth > 0.5)
    return write_sequence(folder, np.stack(pictures), first=0, pattern="occl.%04d.png"), np.stack(truths)


def two_subject_clip(folder, frames: int = 16) -> tuple[str, np.ndarray, np.ndarray]:
    """Two real cut-outs (messi5.jpg and an oval face from obama2.jpg) crossing the moving background."""
    messi = np.zeros((120, 110, 3), np.float32)
    messi[:] = photo_patch()
    messi_alpha = hard_shape().astype(np.float32)
    face = cv2.resize(cv2.cvtColor(cv2.imread(str(SAMPLES / "obama2.jpg")), cv2.COLOR_BGR2RGB), (90, 110)).astype(np.float32)
    face_alpha = np.zeros((110, 90), np.float32)
    cv2.ellipse(face_alpha, (45, 55), (40, 52), 0, 0, 360, 1.0, -1)
    pictures, first, second = [], [], []
    for t, frame in enumerate(background(frames)):
        px, py = position(t)
        picture, a = compose(frame, messi, messi_alpha, px, py)
        picture, b = compose(picture, face, face_alpha, 360 - 5 * t, 200)
        pictures.append(picture)
        first.append(a > 0.5)
        second.append(b > 0.5)
    return write_sequence(folder, np.stack(pictures), first=0, pattern="two.%04d.png"), np.stack(first), np.stack(second)
