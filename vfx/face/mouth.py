"""The mouth in its own coordinates, the opening a dub asks for, and what is seen inside it.

``MouthFrame`` holds one face's mouth in mouth coordinates: ``u`` across (along the eye line), ``v``
down the face, in pixels from the centre of the inner lips. The inner lip contour gives two
profiles over ``u``: the upper and the lower inner lip line, meeting at the inner corners.

An opened mouth is a lens between those lines: ``gap * (1 - x^2)^p`` with ``x`` -1..1 from corner
to corner, pinched at the corners (``p`` > 1/2) and rounder when the lips round. Its width is the
lips' own inner width, capped by the face's scale, so it is never wider than the lips.

The interior is described in lens coordinates (``nu`` 0..1 from corner to corner, ``nv`` 0..1
from the upper to the lower inner lip in each column), so an actor's own interior learnt from an
open frame fits any new opening, and the rendered one keeps its teeth under the upper lip.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from vfx.face.detect import CHIN, LIPS_INNER, LOWER_LIP_INNER, MOUTH_LEFT, MOUTH_RIGHT, UPPER_LIP_INNER, face_scale

UPPER_INNER = LIPS_INNER[:LIPS_INNER.index(308) + 1]  # 78 .. 13 .. 308
LOWER_INNER = LIPS_INNER[LIPS_INNER.index(308):] + [LIPS_INNER[0]]  # 308 .. 14 .. 78
MAX_HALF_WIDTH = 0.3  # an opening's half width at most, in eye distances (a wide mouth is ~0.6 of it)
EXEMPLAR_SIZE = (96, 48)  # (width, height) of a stored mouth interior in lens coordinates
TOOTH_HEIGHT = 0.08  # upper incisors showing under a speaking upper lip, in eye distances
LOWER_TOOTH_HEIGHT = 0.06
TOOTH_WIDTH = 0.095  # one upper incisor, in eye distances


@dataclass
class MouthFrame:
    centre: np.ndarray  # [2] pixels: middle of the inner lips
    ex: np.ndarray  # unit vector across the face (eye line)
    ey: np.ndarray  # unit vector down the face
    scale: float  # eye-corner distance, pixels
    width: float  # outer lip corner to corner, pixels
    upper_u: np.ndarray  # upper inner lip line, sorted by u
    upper_v: np.ndarray
    lower_u: np.ndarray  # lower inner lip line, sorted by u
    lower_v: np.ndarray
    chin_v: float

    @classmethod
    def of(cls, lm: np.ndarray) -> MouthFrame:
        ex = lm[263] - lm[33]
        ex = (ex / max(float(np.linalg.norm(ex)), 1e-3)).astype(np.float32)
        ey = np.array([-ex[1], ex[0]], np.float32)
        if np.dot(lm[CHIN] - lm[UPPER_LIP_INNER], ey) < 0:
            ey = -ey
        centre = ((lm[UPPER_LIP_INNER] + lm[LOWER_LIP_INNER]) / 2).astype(np.float32)
        up_u, up_v = _profile(lm[UPPER_INNER] - centre, ex, ey)
        lo_u, lo_v = _profile(lm[LOWER_INNER] - centre, ex, ey)
        return cls(centre, ex, ey, face_scale(lm), float(np.linalg.norm(lm[MOUTH_RIGHT] - lm[MOUTH_LEFT])),
                   up_u, up_v, lo_u, lo_v, float(np.dot(lm[CHIN] - centre, ey)))

    @property
    def left(self) -> float:
        return float(min(self.upper_u[0], self.lower_u[0]))

    @property
    def right(self) -> float:
        return float(max(self.upper_u[-1], self.lower_u[-1]))

    @property
    def middle(self) -> float:
        return (self.left + self.right) / 2

    @property
    def half_width(self) -> float:
        """Half the opening's width: the lips' inner width, never more than the face's scale allows."""
        return max(min((self.right - self.left) / 2, MAX_HALF_WIDTH * self.scale), 1.0)

    def upper(self, u: np.ndarray) -> np.ndarray:
        return np.interp(u, self.upper_u, self.upper_v).astype(np.float32)

    def lower(self, u: np.ndarray) -> np.ndarray:
        return np.interp(u, self.lower_u, self.lower_v).astype(np.float32)

    def gap(self, u: np.ndarray) -> np.ndarray:
        """The source's own opening between the inner lips at ``u`` (0 outside the corners)."""
        inside = (u > self.left) & (u < self.right)
        return np.where(inside, np.maximum(self.lower(u) - self.upper(u), 0.0), 0.0).astype(np.float32)

    def across(self, u: np.ndarray) -> np.ndarray:
        """-1 .. 1 from the left to the right corner of the opening."""
        return (u - self.middle) / self.half_width

    def uv(self, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        px, py = xs - self.centre[0], ys - self.centre[1]
        return px * self.ex[0] + py * self.ex[1], px * self.ey[0] + py * self.ey[1]

    def xy(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (self.centre[0] + u * self.ex[0] + v * self.ey[0]).astype(np.float32), \
               (self.centre[1] + u * self.ex[1] + v * self.ey[1]).astype(np.float32)


def _profile(points: np.ndarray, ex: np.ndarray, ey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    u, v = points @ ex, points @ ey
    order = np.argsort(u, kind="stable")
    return u[order].astype(np.float32), v[order].astype(np.float32)


def lens(x: np.ndarray, rounding: float) -> np.ndarray:
    """Share of the full gap open at ``x`` (-1..1 corner to corner): pinched corners, rounder when rounded."""
    power = 1.0 - 0.45 * float(np.clip(rounding, 0, 1))
    return np.clip(1.0 - x * x, 0.0, 1.0) ** power


def learn_interior(image: np.ndarray, lm: np.ndarray, min_open: float) -> np.ndarray | None:
    """The actor's own mouth interior from a frame where the mouth is open at least ``min_open`` of
    the mouth's width, resampled to lens coordinates (just inside the inner lips, so no lip colour)."""
    mouth = MouthFrame.of(lm)
    if mouth.width < 8 or float(mouth.gap(np.float32([mouth.middle]))[0]) < min_open * mouth.width:
        return None
    w, h = EXEMPLAR_SIZE
    nu, nv = np.meshgrid(np.linspace(0.06, 0.94, w, dtype=np.float32), np.linspace(0.1, 0.9, h, dtype=np.float32))
    u = mouth.left + nu * (mouth.right - mouth.left)
    top, bottom = mouth.upper(u), mouth.lower(u)
    map_x, map_y = mouth.xy(u, top + nv * np.maximum(bottom - top, 0.0))
    return cv2.remap(image.astype(np.float32), map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def render_interior(skin: np.ndarray, x: np.ndarray, from_top: np.ndarray, from_bottom: np.ndarray,
                    scale: float, half_width: float) -> np.ndarray:
    """An open mouth seen from the front, lit like ``skin`` (RGB), per pixel of the opening.

    ``x``: -1..1 corner to corner; ``from_top``/``from_bottom``: pixels below the upper / above the
    lower inner lip. Upper incisors hang under the upper lip, lower ones show above the lower lip,
    the tongue rises from the floor and the cavity darkens towards the corners and the throat.
    """
    skin = np.asarray(skin, np.float32)
    light = float(skin.mean()) / 255.0
    tint = skin / max(float(skin.mean()), 1.0)
    gap = np.maximum(from_top + from_bottom, 1e-3)
    depth = np.clip(np.minimum(from_top, from_bottom) / (0.25 * scale), 0, 1)  # 0 at the lips, 1 deep inside
    cavity_tone = (0.26 - 0.12 * depth) * (1.0 - 0.45 * np.abs(x) ** 2)
    out = (skin * np.array([0.75, 0.32, 0.32], np.float32)) * cavity_tone[..., None]

    rise = np.clip(from_bottom / np.maximum(0.4 * gap, 1.0), 0, 1)
    tongue = np.clip(1.0 - (x / 0.65) ** 2 - ((from_bottom - 0.1 * gap) / np.maximum(0.45 * gap, 1.0)) ** 2, 0, 1) ** 0.6
    tongue_colour = skin * np.array([0.78, 0.40, 0.42], np.float32) * (0.45 + 0.25 * rise)[..., None]
    out = out * (1 - tongue[..., None]) + tongue_colour * tongue[..., None]

    enamel = (0.28 + 0.38 * light) * 255.0 * (0.6 * np.array([1.0, 0.95, 0.85], np.float32) + 0.4 * tint)
    shade = (1.0 - 0.55 * x * x)[..., None]  # teeth recede round the arch into the dark
    position = x * half_width / (TOOTH_WIDTH * scale)  # in tooth widths from the middle
    upper = _teeth(x, position, from_top, TOOTH_HEIGHT * scale, 0.8, scale)
    lower = _teeth(x, position + 0.5, from_bottom, LOWER_TOOTH_HEIGHT * scale, 0.55, scale)
    lower = lower * np.clip((gap - 2.0 * TOOTH_HEIGHT * scale) / (0.05 * scale), 0, 1)  # hidden by the lip when barely open
    out = out * (1 - lower[..., None]) + (0.6 * enamel * shade) * lower[..., None]
    lip_shadow = 1.0 - 0.4 * np.exp(-from_top / (0.035 * scale))  # the upper lip shades the top of the teeth
    lip_shadow = lip_shadow * (1.0 - 0.15 * np.clip(from_top / (TOOTH_HEIGHT * scale), 0, 1) ** 3)  # greyer biting edge
    out = out * (1 - upper[..., None]) + (enamel * shade * lip_shadow[..., None]) * upper[..., None]
    return np.clip(out, 0, 255).astype(np.float32)


def _teeth(x: np.ndarray, position: np.ndarray, distance: np.ndarray, height: float, reach: float,
           scale: float) -> np.ndarray:
    """Coverage 0..1 of a row of teeth hanging ``height`` from a lip, out to ``reach`` of the half width,
    shorter round the arch; each tooth's free edge rounded, a dark seam where neighbours meet."""
    across = np.clip((reach - np.abs(x)) / 0.15, 0, 1)
    within = position % 1.0  # 0..1 inside one tooth
    edge = height * (1.0 - 0.35 * x * x) * (1.0 - 0.2 * (2 * within - 1) ** 4)
    body = np.clip((edge - distance) / max(0.012 * scale, 0.7), 0, 1)
    seam = 1.0 - 0.22 * np.exp(-(np.minimum(within, 1 - within) / 0.05) ** 2)
    return body * across * seam
