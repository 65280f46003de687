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
from vfx.face.decisions import finish_consent
from vfx.face.detect import (CHIN, LIPS_INNER, LOWER_LIP_INNER, MOUTH_LEFT, MOUTH_RIGHT, UPPER_LIP_INNER,
                             face_scale)
from vfx.face.rejuvenate import edit_granted_faces, find_and_decide
from vfx.face.tracks import DetectFaces
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
CAVITY = np.array([52.0, 18.0, 20.0], np.float32)  # the dark red-brown inside an open mouth


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
        starts = np.array([p.start for p in self.phones] or [0.0])
        which = np.clip(np.searchsorted(starts, times, side="right") - 1, 0, max(len(self.phones) - 1, 0))
        shape = np.array([VISEMES.get(self.phones[k].phone, (0.5, 0.0)) if self.phones else (0.5, 0.0) for k in which])
        opening = env * (0.35 + 0.65 * shape[:, 0])
        rounding = env * shape[:, 1]
        return opening.astype(np.float32), rounding.astype(np.float32)


def load_mouth_track(audio_path: str) -> MouthTrack:
    samples = load_audio(audio_path)
    return MouthTrack(samples, phonemes(samples))


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


class ClassicMouthWarp:
    """Moves the lower lip and jaw along the face's vertical axis and narrows the lips, in place."""

    def __call__(self, image: np.ndarray, lm: np.ndarray, time: float, opening: float, rounding: float) -> None:
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
            warped = self._cavity(warped, lm, centre, ex, ey, v_up, v_lo, delta, squeeze, (x0, y0), min(0.92, 1.6 * (1.0 - gap0 / gap1)))
        moved = (np.abs(dv) + np.abs(du)) > 0.02
        region[moved] = np.clip(np.round(warped[moved]), 0, 255).astype(np.uint8)

    @staticmethod
    def _cavity(warped, lm, centre, ex, ey, v_up, v_lo, delta, squeeze, origin, alpha) -> np.ndarray:
        """Shade the new opening between the lips where the source had closed lips."""
        inner = lm[LIPS_INNER] - centre
        u = inner @ ex
        v = inner @ ey
        v = np.where(v > (v_up + v_lo) / 2, v + delta, v)
        u = u * (1.0 - squeeze)
        pts = centre + np.outer(u, ex) + np.outer(v, ey) - origin
        mask = np.zeros(warped.shape[:2], np.float32)
        cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1.0, lineType=cv2.LINE_AA)
        mask = cv2.GaussianBlur(mask, (0, 0), 1.2)
        shade = CAVITY * (0.7 + 0.3 * np.clip(mask, 0, 1))[..., None]
        a = (alpha * mask)[..., None]
        return warped * (1 - a) + shade * a


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
                 workers: int = 2, faces: DetectFaces | None = None):
        if not Path(audio_path).is_file():
            raise VfxError(f"--lipsync {audio_path}: no such audio file")
        self.gate = gate
        self.audio_path = str(audio_path)  # the writer muxes this instead of the source's audio
        self.backend = backend
        self.mouth = load_mouth_track(self.audio_path)
        self.warp = make_mouth_editor(backend, model_path, self.mouth)
        self.workers = workers
        self.faces = faces or DetectFaces()

    def __call__(self, batch: FrameBatch, shot: ShotState) -> FrameBatch:
        find_and_decide(self.faces, self.gate, self.operation, batch, shot)
        times = (batch.indices - shot.first_frame) / float(shot.fps)
        opening, rounding = self.mouth.targets(times, float(shot.fps))

        def edit(frame: np.ndarray, face: Face, i: int) -> None:
            self.warp(frame, face.landmarks, float(times[i]), float(opening[i]), float(rounding[i]))

        return edit_granted_faces(self.name, self.operation, batch, edit, self.workers)

    def finish(self, shot: ShotState) -> dict | None:
        """Record the shot's summary (frames edited/refused per subject, grant ids) with the gate."""
        return finish_consent(self.gate, shot, self.name, self.operation, {"audio": self.audio_path})


def make_mouth_editor(backend: str, model_path: str | None, mouth: MouthTrack):
    if backend == "classic":
        return ClassicMouthWarp()
    if backend == "onnx":
        if not model_path:
            raise VfxError("lipsync backend 'onnx' needs a model file from the model store (model_path)")
        from vfx.face.onnx_backends import OnnxLipSync

        return OnnxLipSync(model_path, mouth.samples)
    raise VfxError(f"lipsync backend {backend!r}: choose classic or onnx")
