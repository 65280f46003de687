"""ONNX model backends for face edits, run with onnxruntime on weights from the model store.

Interfaces (declared for the store in configs/models.yaml, face_age_onnx / face_lipsync_onnx):

- age editing: input ``image`` float32 [1,3,256,256] RGB in -1..1 (face aligned: eyes and mouth
  at fixed positions), input ``strength`` float32 [1]; output ``edited`` float32 [1,3,256,256] in -1..1.
- Wav2Lip-style lip-sync: input ``face`` float32 [1,6,96,96] in 0..1 (the face crop with its lower
  half blanked, then the unmasked crop as reference), input ``mel`` float32 [1,1,80,16] (log-mel,
  16 kHz, hop 200, normalised to -4..4); output ``generated`` float32 [1,3,96,96] in 0..1.
"""
from __future__ import annotations

import cv2
import numpy as np

from vfx.errors import VfxError
from vfx.face.audio import RATE
from vfx.face.detect import FACE_OVAL, LEFT_EYE, LOWER_LIP_INNER, NOSE_TIP, RIGHT_EYE, UPPER_LIP_INNER

ALIGN_SIZE = 256
# Where the right eye, left eye and mouth centre sit in the aligned crop (fractions of its side).
ALIGN_TEMPLATE = np.array([[0.34, 0.40], [0.66, 0.40], [0.50, 0.74]], np.float32) * ALIGN_SIZE
LIP_SIZE = 96
MEL_STEPS, MEL_BINS, MEL_HOP = 16, 80, 200


def open_session(path: str, inputs: dict[str, list[int]], outputs: dict[str, list[int]]):
    """An onnxruntime session whose graph has exactly the declared input/output names and shapes."""
    import onnxruntime as ort

    try:
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
        session = ort.InferenceSession(str(path), providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types for unreadable graphs
        raise VfxError(f"{path}: not a loadable ONNX model ({str(exc).splitlines()[0]})") from None
    for kind, declared, actual in (("input", inputs, session.get_inputs()), ("output", outputs, session.get_outputs())):
        found = {a.name: a.shape for a in actual}
        for name, shape in declared.items():
            got = found.get(name)
            if got is None or len(got) != len(shape) or any(isinstance(g, int) and g != s for g, s in zip(got, shape)):
                raise VfxError(f"{path}: expected {kind} {name!r} of shape {shape}, model has {found}")
    return session


def _feathered_oval(shape: tuple[int, int], lm: np.ndarray, sigma: float) -> np.ndarray:
    mask = np.zeros(shape, np.float32)
    cv2.fillConvexPoly(mask, cv2.convexHull(np.round(lm[FACE_OVAL]).astype(np.int32)), 1.0, cv2.LINE_AA)
    mask = cv2.erode(mask, np.ones((3, 3), np.uint8), iterations=max(1, int(sigma)))
    return cv2.GaussianBlur(mask, (0, 0), max(sigma, 0.5))


class OnnxRejuvenator:
    """Aligned crop -> age-editing model -> inverse warp -> feathered paste inside the face oval."""

    def __init__(self, model_path: str):
        self.session = open_session(model_path, {"image": [1, 3, ALIGN_SIZE, ALIGN_SIZE], "strength": [1]},
                                    {"edited": [1, 3, ALIGN_SIZE, ALIGN_SIZE]})

    def __call__(self, image: np.ndarray, landmarks: np.ndarray, strength: float) -> None:
        anchors = np.stack([landmarks[RIGHT_EYE].mean(0), landmarks[LEFT_EYE].mean(0),
                            (landmarks[UPPER_LIP_INNER] + landmarks[LOWER_LIP_INNER]) / 2]).astype(np.float32)
        to_crop, _ = cv2.estimateAffinePartial2D(anchors, ALIGN_TEMPLATE)
        if to_crop is None:
            return
        crop = cv2.warpAffine(image, to_crop, (ALIGN_SIZE, ALIGN_SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        x = (crop.astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1)[None]
        y = self.session.run(["edited"], {"image": x, "strength": np.array([strength], np.float32)})[0][0]
        edited = np.clip((y.transpose(1, 2, 0) + 1.0) * 127.5, 0, 255).astype(np.float32)
        h, w = image.shape[:2]
        back = cv2.warpAffine(edited, to_crop, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
        inside = cv2.warpAffine(np.ones((ALIGN_SIZE, ALIGN_SIZE), np.float32), to_crop, (w, h),
                                flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP)
        alpha = _feathered_oval((h, w), landmarks, 3.0) * inside
        touched = alpha > 1e-3
        blend = image[touched].astype(np.float32) * (1 - alpha[touched, None]) + back[touched] * alpha[touched, None]
        image[touched] = np.clip(np.round(blend), 0, 255).astype(np.uint8)


def log_mel(samples: np.ndarray) -> np.ndarray:
    """Wav2Lip's spectrogram: pre-emphasis, 800-sample STFT every 200 samples, 80 mel bands 55-7600 Hz,
    dB above -100, scaled to -4..4. Returns float32 [80, T] at 80 columns per second."""
    x = np.append(samples[0], samples[1:] - 0.97 * samples[:-1]).astype(np.float32)
    n_fft = 800
    x = np.pad(x, n_fft // 2, mode="reflect")
    count = 1 + (len(x) - n_fft) // MEL_HOP
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[:: MEL_HOP][:count]
    spectrum = np.abs(np.fft.rfft(frames * np.hanning(n_fft + 1)[:-1].astype(np.float32), axis=1))
    mel = _mel_filters(n_fft) @ spectrum.T
    db = 20 * np.log10(np.maximum(1e-5, mel)) - 20
    return np.clip(8 * ((db + 100) / 100) - 4, -4, 4).astype(np.float32)


def _mel_filters(n_fft: int, fmin: float = 55.0, fmax: float = 7600.0) -> np.ndarray:
    def hz_to_mel(f):
        return 2595 * np.log10(1 + np.asarray(f) / 700)

    mels = np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), MEL_BINS + 2)
    hz = 700 * (10 ** (mels / 2595) - 1)
    bins = np.fft.rfftfreq(n_fft, 1 / RATE)
    lower, centre, upper = hz[:-2, None], hz[1:-1, None], hz[2:, None]
    up = (bins[None] - lower) / (centre - lower)
    down = (upper - bins[None]) / (upper - centre)
    weights = np.maximum(0, np.minimum(up, down))
    return (weights * (2.0 / (upper - lower))).astype(np.float32)


class OnnxLipSync:
    """Wav2Lip-style: square face crop, lower half regenerated from the mel window, pasted back below the nose."""

    def __init__(self, model_path: str, samples: np.ndarray):
        self.session = open_session(model_path, {"face": [1, 6, LIP_SIZE, LIP_SIZE], "mel": [1, 1, MEL_BINS, MEL_STEPS]},
                                    {"generated": [1, 3, LIP_SIZE, LIP_SIZE]})
        self.mel = log_mel(samples)

    def window(self, time: float) -> np.ndarray:
        start = int(round(time * RATE / MEL_HOP))
        cols = np.clip(np.arange(start, start + MEL_STEPS), 0, self.mel.shape[1] - 1)
        return self.mel[:, cols][None, None]

    def __call__(self, image: np.ndarray, lm: np.ndarray, time: float, opening: float, rounding: float) -> None:
        oval = lm[FACE_OVAL]
        centre = (oval.min(0) + oval.max(0)) / 2
        side = float((oval.max(0) - oval.min(0)).max()) * 1.1
        scale = LIP_SIZE / side
        to_crop = np.array([[scale, 0, LIP_SIZE / 2 - centre[0] * scale], [0, scale, LIP_SIZE / 2 - centre[1] * scale]], np.float32)
        crop = cv2.warpAffine(image, to_crop, (LIP_SIZE, LIP_SIZE), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
        ref = crop.astype(np.float32).transpose(2, 0, 1) / 255.0
        masked = ref.copy()
        masked[:, LIP_SIZE // 2:] = 0.0
        face = np.concatenate([masked, ref])[None]
        y = self.session.run(["generated"], {"face": face, "mel": self.window(time)})[0][0]
        generated = np.clip(y.transpose(1, 2, 0) * 255.0, 0, 255).astype(np.float32)
        h, w = image.shape[:2]
        back = cv2.warpAffine(generated, to_crop, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
        # Only the lower face, below the nose tip, inside the oval, feathered.
        lower = np.zeros((h, w), np.float32)
        nose_y = int(lm[NOSE_TIP, 1])
        lower[max(0, nose_y):] = 1.0
        alpha = _feathered_oval((h, w), lm, 3.0) * cv2.GaussianBlur(lower, (0, 0), 4.0)
        touched = alpha > 1e-3
        blend = image[touched].astype(np.float32) * (1 - alpha[touched, None]) + back[touched] * alpha[touched, None]
        image[touched] = np.clip(np.round(blend), 0, 255).astype(np.uint8)
