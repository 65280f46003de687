"""Consent-gated lip-sync: re-shape a granted face's mouth to follow a new audio track.

``classic`` (embedded default, CPU): pocketsphinx phones from the new audio are mapped to
visemes (how open, how rounded), blended over +-60 ms; with the loudness envelope they give a
mouth target per video frame. The opening is a lens between the inner lip lines (``vfx.face.mouth``):
pinched at the corners, no wider than the lips. Each column across the mouth is moved along the
face's vertical axis: the upper lip rises a little, the lower lip is carried down (its texture
kept) and the jaw and chin drop with it; rounding narrows the lips. The new gap shows the actor's
own mouth interior (learnt from a frame where the mouth was open) or a rendered one lit like the
face. Only the granted face's lower face moves; every other face stays pixel-identical. The output
must carry the new audio: the writer takes ``LipSync.audio_path``.

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
from vfx.face.detect import LOWER_LIP_INNER, UPPER_LIP_INNER
from vfx.face.mouth import MAX_HALF_WIDTH, MouthFrame, lens, render_interior
from vfx.face.mouth import learn_interior as _learn_interior
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
UPPER_SHARE = 0.3  # of a new opening, the upper lip's rise; the lower lip and jaw drop the rest
LIP_RIM = 0.015  # width of the shaded inner edge of the lips, in eye distances
UPPER_FADE = 0.35  # the upper lip's rise fades out over this far above it, in eye distances
BLEND_S = 0.06  # seconds either side over which visemes blend
OPEN_EXEMPLAR = 0.22  # a source lip gap (share of mouth width) wide enough to learn the actor's mouth from


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
        opening = env * (0.5 + 0.5 * shape[:, 0])
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
    """Opens the mouth to a lens between the inner lips, in place: the upper lip rises a little, the
    lower lip and the jaw drop, the lips narrow when rounded; the gap shows a mouth interior.

    Every column across the mouth is moved along the face's vertical axis only, monotonically, so
    the lips are carried (their texture kept), never smeared, and the mapping never folds.
    """

    def __call__(self, image: np.ndarray, lm: np.ndarray, time: float, opening: float, rounding: float,
                 interior: np.ndarray | None = None) -> None:
        mouth = MouthFrame.of(lm)
        s, width = mouth.scale, min(mouth.width, 2.2 * MAX_HALF_WIDTH * mouth.scale)
        gap1 = float(np.clip(opening, 0, 1)) * MAX_OPEN * width
        squeeze = float(np.clip(rounding, 0, 1)) * MAX_ROUND
        extra = gap1 - float(mouth.gap(np.float32([mouth.middle]))[0])  # at the middle; < 0 closes
        jaw = (1 - UPPER_SHARE) * extra
        fade = 0.45 * s
        reach = max(1.3 * s, mouth.chin_v + fade + abs(jaw)) + 4
        x0, y0, x1, y1 = _box(mouth.centre, reach, image.shape)
        if x1 <= x0 or y1 <= y0:
            return
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        u, v = mouth.uv(xs, ys)

        # Rounding: sample farther out near the mouth, so the lips look narrower.
        wr = np.exp(-((u - mouth.middle) / (0.9 * width)) ** 2 - (v / (0.7 * width)) ** 2)
        su = u + (u - mouth.middle) * (squeeze / (1.0 - squeeze)) * wr

        x = mouth.across(su)
        top0, bottom0 = mouth.upper(su), mouth.lower(su)
        gap0 = mouth.gap(su)
        target = gap1 * lens(x, rounding) * ((su > mouth.left) & (su < mouth.right))
        more = target - gap0
        rise, drop = UPPER_SHARE * more, (1 - UPPER_SHARE) * more
        top1, bottom1 = top0 - rise, bottom0 + drop
        jaw_here = jaw * (1.0 - _smoothstep((np.abs(u - mouth.middle) - 0.6 * width) / (0.9 * s)))

        sv = v.copy()
        above = v <= top1  # upper lip and above: carried up, fading out towards the nose
        sv[above] = (v + rise * (1.0 - _smoothstep((top1 - v) / UPPER_FADE / s)))[above]
        between = (v > top1) & (v < bottom1)
        t = (v - top1) / np.maximum(bottom1 - top1, 1e-3)
        sv[between] = (top0 + t * (bottom0 - top0))[between]
        # Lower lip to chin: from the lip's own drop to the jaw's, then fading out under the chin.
        chin1 = mouth.chin_v + jaw_here
        ramp = np.maximum(chin1 - bottom1, 2.0 * np.abs(jaw_here - drop) + 1.0)
        below_drop = drop + (jaw_here - drop) * _smoothstep((v - bottom1) / ramp)
        under = jaw_here * (1.0 - _smoothstep((v - chin1) / fade))
        lower_part = v >= bottom1
        sv[lower_part] = (v - np.where(v <= chin1, below_drop, under))[lower_part]

        map_x, map_y = mouth.xy(su, sv)
        warped = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
        opened = np.clip(np.minimum(v - top1, bottom1 - v) + 0.5, 0, 1) * (target > 0.5)
        if gap1 > 1.0 and opened.any():
            share = float(np.clip(1.6 * extra / gap1, 0, 1))  # a source mouth already this open shows its own
            skin, grain = _skin_light(image[y0:y1, x0:x1], mouth, u, v)
            fill = self._interior(skin, mouth, x, v - top1, bottom1 - v, interior)
            # The footage's own grain over the new interior, fresh each frame like the film's.
            noise = np.random.default_rng(int(round(time * 1000)) & 0xFFFFFFFF).normal(0.0, grain, v.shape)
            fill = fill + noise[..., None].astype(np.float32)
            a = (share * opened)[..., None]
            # The lips curl into the mouth: their inner edge falls into shade along the new opening.
            outside = np.maximum(np.maximum(top1 - v, v - bottom1), 0.0)
            rim = share * np.exp(-outside / (LIP_RIM * s)) * (target > 0.5) * (1 - opened)
            warped = warped * (1 - 0.3 * rim[..., None])
            warped = warped * (1 - a) + fill * a
        else:
            opened = np.zeros_like(v)
        moved = (np.abs(sv - v) + np.abs(su - u) > 0.02) | (opened > 0)
        region = image[y0:y1, x0:x1]
        region[moved] = np.clip(np.round(warped[moved]), 0, 255).astype(np.uint8)

    @staticmethod
    def _interior(skin: np.ndarray, mouth: MouthFrame, x: np.ndarray, from_top: np.ndarray,
                  from_bottom: np.ndarray, interior: np.ndarray | None) -> np.ndarray:
        """The actor's own interior (learnt from an open frame, in lens coordinates) or one rendered
        in the light of the skin around the mouth."""
        if interior is None:
            return render_interior(skin, x, from_top, from_bottom, mouth.scale, mouth.half_width)
        h, w = interior.shape[:2]
        nu = np.clip((x + 1) / 2, 0, 1) * (w - 1)
        nv = np.clip(from_top / np.maximum(from_top + from_bottom, 1e-3), 0, 1) * (h - 1)
        return cv2.remap(interior, nu.astype(np.float32), nv.astype(np.float32), cv2.INTER_LINEAR)


def _skin_light(region: np.ndarray, mouth: MouthFrame, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, float]:
    """The skin between the lower lip and the chin: its median colour (the light the interior must
    match) and its grain (the noise a new interior must carry not to look painted on)."""
    s = mouth.scale
    band = (np.abs(u - mouth.middle) < 1.3 * mouth.half_width) & (v > 0.22 * s) & (v < 0.4 * s)
    if band.sum() < 10:
        band = np.ones(v.shape, bool)
    grey = region.astype(np.float32).mean(-1)
    fine = grey - cv2.GaussianBlur(grey, (0, 0), 1.0)
    grain = 1.4826 * float(np.median(np.abs(fine[band])))  # robust std, creases count little
    return np.median(region[band].reshape(-1, 3), axis=0).astype(np.float32), grain


def learn_interior(image: np.ndarray, lm: np.ndarray) -> np.ndarray | None:
    """The actor's own mouth interior from a source frame where the mouth is open, in lens coordinates."""
    return _learn_interior(image, lm, OPEN_EXEMPLAR)


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
