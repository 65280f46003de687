"""Consent-gated lip-sync: re-shape a granted face's mouth to follow a new audio track.

``classic`` (embedded default, CPU): pocketsphinx phones from the new audio are mapped to
visemes (how open, how rounded); combined with the loudness envelope they give a mouth target
per video frame. A smooth displacement field anchored on the lip landmarks moves the lower lip
and jaw (open/close) and narrows the mouth (rounding); where the mouth opens wider than in the
source, the new gap between the lips is shaded as the mouth cavity. Only the granted face's
lower face moves; every other face stays pixel-identical. The output must carry the new audio:
the writer takes ``LipSync.audio_path``.

``onnx``: a Wav2Lip-style model (mouth crop + mel window); see ``vfx.face.onnx_backends``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vfx.errors import VfxError
from vfx.face.audio import RATE, Phone, load_audio, loudness, phonemes
from vfx.face.detect import (CHIN, LIPS_INNER, LOWER_LIP_INNER, MOUTH_LEFT, MOUTH_RIGHT, UPPER_LIP_INNER,
                             face_scale)
from vfx.face.report import edit_granted_faces, finish_report
from vfx.frames import Face, FrameBatch, ShotState, Step

OPERATION = "lipsync"

# ARPAbet phone -> (jaw opening 0..1, lip rounding 0..1). Silence is left to the loudness envelope.
VISEMES: dict[str, tuple[float, float]] = {
    "AA": (1.0, 0.0), "AE": (0.85, 0.0), "AH": (0.7, 0.0), "AO": (0.85, 0.5), "AW": (0.85, 0.5),
    "AY": (0.85, 0.0), "EH": (0.6, 0.0), "ER": (0.45, 0.4), "EY": (0.55, 0.0), "IH": (0.45, 0.0),
    "IY": (0.35, 0.0), "OW": (0.65, 0.8), "OY": (0.65, 0.6), "UH": (0.45, 0.7), "UW": (0.35, 1.0),
    "B": (0.0, 0.0), "M": (0.0, 0.0), "P": (0.0, 0.0), "F": (0.15, 0.0), "V": (0.15, 0.0),
    "TH": (0.3, 0.0), "DH": (0.3, 0.0), "T": (0.3, 0.0), "D": (0.3, 0.0), "N": (0.3, 0.0),
    "L": (0.35, 0.0), "S": (0.2, 0.0), "Z": (0.2, 0.0), "SH": (0.3, 0.6), "ZH": (0.3, 0.6),
    "CH": (0.3, 0.6), "JH": (0.3, 0.6), "W": (0.2, 0.9), "R": (0.35, 0.5), "Y": (0.3, 0.0),
    "K": (0.4, 0.0), "G": (0.4, 0.0), "NG": (0.35, 0.0), "HH": (0.5, 0.0), "SIL": (0.5, 0.0),
}
MAX_OPEN = 0.55  # lip gap of a wide-open mouth, as a share of the mouth width
MAX_ROUND = 0.22  # how much a fully rounded mouth narrows
BLEND_S = 0.06  # seconds either side over which visemes blend
OPEN_EXEMPLAR = 0.22  # a source lip gap (share of mouth width) wide enough to learn the actor's mouth from
EXEMPLAR_SIZE = (96, 48)  # (width, height) of a stored mouth interior


@dataclass
class MouthTrack:
    """The new audio reduced to what the mouth must do: opening and rounding per video frame."""

    samples: np.ndarray
    phones: list[Phone]

    @property
    def duration(self) -> float:
        return len(self.samples) / RATE

    def targets(self, times: np.ndarray, fps: float) -> tuple[np.ndarray, np.ndarray]:
        env = loudness(self.samples, times, 2.0 / fps)
        # Coarticulation: a mouth is already moving towards the next viseme and still leaving the last,
        # so the shape at t is the mean of the visemes over +-BLEND_S (no snapping at phone boundaries).
        offsets = np.linspace(-BLEND_S, BLEND_S, 9)
        shape = np.mean([self._visemes(times + dt) for dt in offsets], axis=0)
        opening = env * (0.35 + 0.65 * shape[:, 0])
        rounding = env * shape[:, 1]
        return opening.astype(np.float32), rounding.astype(np.float32)


    def _visemes(self, times: np.ndarray) -> np.ndarray:
        if not self.phones:
            return np.tile(np.array([[0.5, 0.0]], np.float32), (len(times), 1))
        starts = np.array([p.start for p in self.phones])
        which = np.clip(np.searchsorted(starts, times, side="right") - 1, 0, len(self.phones) - 1)
        return np.array([VISEMES.get(self.phones[k].phone, (0.5, 0.0)) for k in which], np.float32)


def load_mouth_track(audio_path: str) -> MouthTrack:
    samples = load_audio(audio_path)
    return MouthTrack(samples, phonemes(samples))


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


class ClassicMouthWarp:
    """Moves the lower lip and jaw along the face's vertical axis and narrows the lips, in place."""

    def __call__(self, image: np.ndarray, lm: np.ndarray, time: float, opening: float, rounding: float,
                 interior: np.ndarray | None = None) -> None:
        s = face_scale(lm)
        eye_axis = lm[263] - lm[33]
        ex = eye_axis / max(np.linalg.norm(eye_axis), 1e-3)
        ey = np.array([-ex[1], ex[0]], np.float32)  # points down the face
        if np.dot(lm[CHIN] - lm[UPPER_LIP_INNER], ey) < 0:
            ey = -ey
        centre = (lm[UPPER_LIP_INNER] + lm[LOWER_LIP_INNER]) / 2
        width = float(np.linalg.norm(lm[MOUTH_RIGHT] - lm[MOUTH_LEFT]))
        v_up = float(np.dot(lm[UPPER_LIP_INNER] - centre, ey))
        v_lo = float(np.dot(lm[LOWER_LIP_INNER] - centre, ey))
        v_chin = float(np.dot(lm[CHIN] - centre, ey))
        gap0 = max(v_lo - v_up, 0.0)
        gap1 = opening * MAX_OPEN * width
        delta = gap1 - gap0
        fade = 0.45 * s
        x0, y0, x1, y1 = _box(centre, max(1.3 * s, v_chin + fade + abs(delta)) + 4, image.shape)
        if x1 <= x0 or y1 <= y0:
            return
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        px, py = xs - centre[0], ys - centre[1]
        u = px * ex[0] + py * ex[1]
        v = px * ey[0] + py * ey[1]

        # Vertical share of the jaw motion: 0 above the upper lip, 1 from the (moved) lower lip
        # to the chin, fading out below the chin. Monotone, so the mapping never folds.
        ramp_end = v_up + max(gap1, 1.0)
        wv = np.where(v <= ramp_end, np.clip((v - v_up) / max(ramp_end - v_up, 1e-3), 0, 1),
                      1.0 - _smoothstep((v - (v_chin + max(delta, 0.0))) / fade))
        wu = 1.0 - _smoothstep((np.abs(u) - 0.6 * width) / (0.9 * s))
        dv = delta * wv * wu
        squeeze = rounding * MAX_ROUND
        wr = np.exp(-(u / (0.9 * width)) ** 2 - (v / (0.7 * width)) ** 2)
        du = u * (squeeze / (1.0 - squeeze)) * wr  # sample farther out -> mouth looks narrower

        src_u, src_v = u + du, v - dv
        map_x = centre[0] + src_u * ex[0] + src_v * ey[0]
        map_y = centre[1] + src_u * ex[1] + src_v * ey[1]
        region = image[y0:y1, x0:x1]
        warped = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
        if gap1 > gap0 + 1.0:
            alpha = min(1.0, 1.6 * (1.0 - gap0 / gap1))
            warped = self._cavity(warped, lm, centre, ex, ey, v_up, v_lo, delta, squeeze, (x0, y0), alpha, interior, s)
        moved = (np.abs(dv) + np.abs(du)) > 0.02
        region[moved] = np.clip(np.round(warped[moved]), 0, 255).astype(np.uint8)

    @staticmethod
    def _cavity(warped, lm, centre, ex, ey, v_up, v_lo, delta, squeeze, origin, alpha, interior, s) -> np.ndarray:
        """Fill the new opening between the lips with a mouth interior: the actor's own (``interior``,
        learnt from a frame where the mouth was open) or one rendered in the face's light."""
        inner = lm[LIPS_INNER] - centre
        u = inner @ ex
        v = inner @ ey
        v = np.where(v > (v_up + v_lo) / 2, v + delta, v)
        u = u * (1.0 - squeeze)
        pts = centre + np.outer(u, ex) + np.outer(v, ey) - origin
        mask = np.zeros(warped.shape[:2], np.float32)
        cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1.0, lineType=cv2.LINE_AA)
        mask = cv2.GaussianBlur(mask, (0, 0), max(0.8, 0.012 * s))
        # The interior lives in mouth coordinates (across, down), mapped onto the opening's extent.
        span_u = max(float(u.max() - u.min()), 2.0)
        span_v = max(float(v.max() - v.min()), 2.0)
        ys, xs = np.mgrid[0:warped.shape[0], 0:warped.shape[1]].astype(np.float32)
        px, py = xs + origin[0] - centre[0], ys + origin[1] - centre[1]
        nu = ((px * ex[0] + py * ex[1]) - u.min()) / span_u  # 0..1 left to right
        nv = ((px * ey[0] + py * ey[1]) - v.min()) / span_v  # 0..1 top to bottom
        if interior is None:
            interior = render_interior(_skin_colour(warped, pts, s))
        h, w = interior.shape[:2]
        fill = cv2.remap(interior, np.clip(nu, 0, 1) * (w - 1), np.clip(nv, 0, 1) * (h - 1), cv2.INTER_LINEAR)
        a = (alpha * np.clip(mask, 0, 1))[..., None]
        return warped * (1 - a) + fill * a


def _skin_colour(image: np.ndarray, mouth: np.ndarray, s: float) -> np.ndarray:
    """Mean colour of the skin just around the mouth: the light the interior must match."""
    x0, y0 = np.maximum(mouth.min(0) - 0.3 * s, 0).astype(int)
    x1, y1 = (mouth.max(0) + 0.3 * s).astype(int)
    patch = image[y0:y1, x0:x1].reshape(-1, 3)
    return np.median(patch, axis=0).astype(np.float32) if len(patch) else np.array([180.0, 140.0, 120.0], np.float32)


def render_interior(skin: np.ndarray, size: tuple[int, int] = EXEMPLAR_SIZE) -> np.ndarray:
    """An open mouth seen from the front, lit like ``skin``: dark cavity, upper teeth, tongue."""
    w, h = size
    nu, nv = np.meshgrid(np.linspace(-1, 1, w, dtype=np.float32), np.linspace(0, 1, h, dtype=np.float32))
    light = float(skin.mean()) / 255.0
    cavity = skin * np.array([0.22, 0.10, 0.10], np.float32)
    depth = 0.55 + 0.45 * np.clip(np.abs(nu) ** 1.5 + np.abs(nv - 0.5), 0, 1)  # darkest at the back, centre
    out = cavity * depth[..., None]
    teeth = np.clip((0.3 - nv) / 0.06, 0, 1) * np.clip((0.8 - np.abs(nu)) / 0.15, 0, 1)
    gaps = 1.0 - 0.18 * np.exp(-((np.abs(nu) * 4.0) % 1.0 - 0.5) ** 2 / 0.002)  # where one tooth meets the next
    tooth = np.array([236.0, 228.0, 212.0], np.float32) * (0.45 + 0.5 * light) * (1 - 0.35 * np.abs(nu) ** 2)[..., None]
    out = out * (1 - teeth[..., None]) + tooth * (teeth * gaps)[..., None]
    tongue = np.clip(1.0 - ((nu / 0.7) ** 2 + ((nv - 1.0) / 0.4) ** 2), 0, 1) ** 0.5
    tongue_colour = skin * np.array([0.75, 0.38, 0.40], np.float32) * (0.7 + 0.3 * (1 - nv))[..., None]
    out = out * (1 - tongue[..., None]) + tongue_colour * tongue[..., None]
    return cv2.GaussianBlur(out, (0, 0), 0.8).astype(np.float32)


def learn_interior(image: np.ndarray, lm: np.ndarray) -> np.ndarray | None:
    """The actor's own mouth interior from a source frame where the mouth is open, in mouth coordinates."""
    width = float(np.linalg.norm(lm[MOUTH_RIGHT] - lm[MOUTH_LEFT]))
    gap = float(np.linalg.norm(lm[LOWER_LIP_INNER] - lm[UPPER_LIP_INNER]))
    if width < 8 or gap < OPEN_EXEMPLAR * width:
        return None
    ex = lm[263] - lm[33]
    ex = ex / max(float(np.linalg.norm(ex)), 1e-3)
    ey = np.array([-ex[1], ex[0]], np.float32)
    if np.dot(lm[CHIN] - lm[UPPER_LIP_INNER], ey) < 0:
        ey = -ey
    inner = lm[LIPS_INNER]
    u, v = inner @ ex, inner @ ey
    w, h = EXEMPLAR_SIZE
    nu, nv = np.meshgrid(np.linspace(0, 1, w, dtype=np.float32), np.linspace(0, 1, h, dtype=np.float32))
    # Sample a little inside the inner lip line so no lip colour comes along.
    uu = u.min() + (0.08 + 0.84 * nu) * (u.max() - u.min())
    vv = v.min() + (0.12 + 0.76 * nv) * (v.max() - v.min())
    map_x = uu * ex[0] + vv * ey[0]
    map_y = uu * ex[1] + vv * ey[1]
    return cv2.remap(image.astype(np.float32), map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _box(centre: np.ndarray, radius: float, shape) -> tuple[int, int, int, int]:
    h, w = shape[:2]
    x0, y0 = int(max(0, centre[0] - radius)), int(max(0, centre[1] - radius))
    x1, y1 = int(min(w, centre[0] + radius)), int(min(h, centre[1] + radius))
    return x0, y0, x1, y1


class LipSync(Step):
    """Step: re-time the mouth of every face whose track holds a ``lipsync`` grant to ``audio_path``."""

    name = "lipsync"
    operation = OPERATION

    def __init__(self, gate: Any, audio_path: str, backend: str = "classic", model_path: str | None = None,
                 workers: int = 2):
        if not Path(audio_path).is_file():
            raise VfxError(f"--lipsync {audio_path}: no such audio file")
        self.gate = gate
        self.audio_path = str(audio_path)  # the writer muxes this instead of the source's audio
        self.backend = backend
        self.mouth = load_mouth_track(self.audio_path)
        self.warp = make_mouth_editor(backend, model_path, self.mouth)
        self.workers = workers
        self.model_hashes: dict[str, str] = getattr(self.warp, "model_hashes", {})

    def __call__(self, batch: FrameBatch, shot: ShotState) -> FrameBatch:
        times = (batch.indices - shot.first_frame) / float(shot.fps)
        opening, rounding = self.mouth.targets(times, float(shot.fps))

        interiors = self._interiors(batch, shot)

        def edit(frame: np.ndarray, face: Face, i: int) -> None:
            if isinstance(self.warp, ClassicMouthWarp):
                self.warp(frame, face.landmarks, float(times[i]), float(opening[i]), float(rounding[i]),
                          interiors[i].get(face.track_id))
            else:
                self.warp(frame, face.landmarks, float(times[i]), float(opening[i]), float(rounding[i]))

        return edit_granted_faces(self.name, self.operation, batch, shot, edit, self.workers, gate=self.gate)

    def _interiors(self, batch: FrameBatch, shot: ShotState) -> list[dict[int, np.ndarray]]:
        """Per frame, per granted track: the widest open mouth of that actor seen so far in the shot's
        source frames (the step's own memory, ``shot.steps["lipsync.mouths"]``)."""
        mouths: dict[int, tuple[float, np.ndarray]] = shot.steps.setdefault(f"{self.name}.mouths", {})
        per_frame = []
        for image, faces in zip(batch.originals, batch.faces or []):
            for face in faces:
                if self.operation in face.allowed_ops and len(face.landmarks):
                    learnt = learn_interior(image, face.landmarks)
                    gap = float(np.linalg.norm(face.landmarks[LOWER_LIP_INNER] - face.landmarks[UPPER_LIP_INNER]))
                    if learnt is not None and gap > mouths.get(face.track_id, (0.0, None))[0]:
                        mouths[face.track_id] = (gap, learnt)
            per_frame.append({track: interior for track, (_, interior) in mouths.items()})
        return per_frame

    def finish(self, shot: ShotState) -> dict | None:
        """The shot's summary (frames edited, not found, refused per subject), recorded with the gate."""
        return finish_report(self.gate, shot, self.name, self.operation, {"audio": self.audio_path})


def make_mouth_editor(backend: str, model_path: str | None, mouth: MouthTrack):
    if backend == "classic":
        return ClassicMouthWarp()
    if backend == "onnx":
        if not model_path:
            raise VfxError("lipsync backend 'onnx' needs a model file from the model store (model_path)")
        from vfx.face.onnx_backends import OnnxLipSync

        return OnnxLipSync(model_path, mouth.samples)
    raise VfxError(f"lipsync backend {backend!r}: choose classic or onnx")
