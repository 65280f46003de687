"""Face detection and 478-point landmarks with mediapipe (bundled weights, CPU).

Two stages: the full-range face detector finds faces of any size in the frame, then face mesh
runs on a square crop around each one, so small background faces get landmarks too. Faces that
cannot be edited safely (too small, in profile, partly outside the frame, low confidence) are
still returned, flagged with ``skip_reason``, so every step can say why it left them alone.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np

from vfx.errors import VfxError

# Landmark index groups of the 478-point mesh (refine_landmarks=True).
FACE_OVAL = [10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
             152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109]
LEFT_EYE = [263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466]
RIGHT_EYE = [33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246]
LEFT_BROW = [276, 283, 282, 295, 285, 300, 293, 334, 296, 336]
RIGHT_BROW = [46, 53, 52, 65, 55, 70, 63, 105, 66, 107]
LIPS_OUTER = [61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146]
LIPS_INNER = [78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95]
UPPER_LIP_INNER, LOWER_LIP_INNER = 13, 14
MOUTH_LEFT, MOUTH_RIGHT = 61, 291
NOSE_TIP, CHIN, FOREHEAD = 1, 152, 10
CHEEK_RIGHT, CHEEK_LEFT = 234, 454
EYES_AND_MOUTH = sorted(set(LEFT_EYE + RIGHT_EYE + LIPS_OUTER + LIPS_INNER))


@dataclass
class DetectedFace:
    """One face in one frame before tracking: pixel box, landmarks, detector score, skip reason."""

    box: tuple[float, float, float, float]
    landmarks: np.ndarray  # float32 [478, 2]
    score: float
    skip_reason: str | None = None


@dataclass
class DetectorConfig:
    min_size: int = 40  # px; smaller faces are skipped (too few pixels to edit cleanly)
    min_score: float = 0.5  # below this the face is likely occluded
    max_yaw_ratio: float = 8.0  # near/far cheek distance from the nose; above = profile
    max_outside: float = 0.08  # fraction of the face oval outside the frame
    crop_size: int = 256
    max_faces: int = 6


Box = tuple[float, float, float, float]  # x, y, w, h in frame pixels
BoxSource = Callable[[np.ndarray], list[tuple[Box, float]]]  # RGB frame -> (box, score) per face


class FaceDetector:
    """Thread-safe detector: each thread gets its own mediapipe graphs (they are not thread-safe).

    ``box_source`` replaces mediapipe's face detector as the source of boxes (e.g. SCRFD); face mesh
    still gives every box its landmarks and skip reason.
    """

    def __init__(self, config: DetectorConfig | None = None, workers: int = 2, box_source: BoxSource | None = None):
        self.config = config or DetectorConfig()
        self.workers = workers
        self.box_source = box_source
        self._local = threading.local()

    def _graphs(self):
        if not hasattr(self._local, "mesh"):
            import mediapipe as mp

            self._local.detector = mp.solutions.face_detection.FaceDetection(
                model_selection=1, min_detection_confidence=0.35)
            self._local.mesh = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=True, max_num_faces=1, refine_landmarks=True, min_detection_confidence=0.3)
        return self._local.detector, self._local.mesh

    def detect(self, image: np.ndarray) -> list[DetectedFace]:
        """Faces in one RGB uint8 frame, largest first."""
        if image.dtype != np.uint8 or image.ndim != 3:
            raise VfxError(f"face detection needs an RGB uint8 image, got {image.dtype} {image.shape}")
        detector, mesh = self._graphs()
        boxes = self.box_source(image) if self.box_source is not None else self._mediapipe_boxes(image, detector)
        faces = [self._landmarks(image, box, score, mesh) for box, score in boxes[: self.config.max_faces]]
        faces = _drop_duplicates(faces)
        return sorted(faces, key=lambda f: -f.box[2] * f.box[3])

    @staticmethod
    def _mediapipe_boxes(image: np.ndarray, detector) -> list[tuple[Box, float]]:
        h, w = image.shape[:2]
        boxes = []
        for det in detector.process(image).detections or []:
            rel = det.location_data.relative_bounding_box
            boxes.append(((rel.xmin * w, rel.ymin * h, rel.width * w, rel.height * h), float(det.score[0])))
        return boxes

    def detect_batch(self, frames: np.ndarray) -> list[list[DetectedFace]]:
        with ThreadPoolExecutor(self.workers) as pool:
            return list(pool.map(self.detect, frames))

    def _landmarks(self, image: np.ndarray, box: tuple[float, float, float, float], score: float, mesh) -> DetectedFace:
        x, y, bw, bh = box
        side = 1.9 * max(bw, bh)  # face mesh expects the face to fill about half the crop
        cx, cy = x + bw / 2, y + bh / 2
        size = self.config.crop_size
        scale = size / side
        to_crop = np.array([[scale, 0, size / 2 - cx * scale], [0, scale, size / 2 - cy * scale]], np.float32)
        crop = cv2.warpAffine(image, to_crop, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        found = mesh.process(crop).multi_face_landmarks
        if not found:
            return DetectedFace(box, np.zeros((0, 2), np.float32), score, "no landmarks (occluded or turned away)")
        pts = np.array([(p.x, p.y) for p in found[0].landmark], np.float32) * size
        landmarks = ((pts - to_crop[:, 2]) / scale).astype(np.float32)
        mins, maxs = landmarks.min(0), landmarks.max(0)
        face_box = (float(mins[0]), float(mins[1]), float(maxs[0] - mins[0]), float(maxs[1] - mins[1]))
        return DetectedFace(face_box, landmarks, score, self._skip_reason(landmarks, face_box, score, image.shape))

    def _skip_reason(self, lm: np.ndarray, box, score: float, shape) -> str | None:
        cfg = self.config
        if min(box[2], box[3]) < cfg.min_size:
            return f"too small ({min(box[2], box[3]):.0f} px < {cfg.min_size})"
        near, far = sorted([abs(lm[NOSE_TIP, 0] - lm[CHEEK_RIGHT, 0]), abs(lm[CHEEK_LEFT, 0] - lm[NOSE_TIP, 0])])
        if far / max(near, 1e-3) > cfg.max_yaw_ratio:
            return "profile (turned away)"
        oval = lm[FACE_OVAL]
        h, w = shape[:2]
        outside = np.mean((oval[:, 0] < 0) | (oval[:, 1] < 0) | (oval[:, 0] >= w) | (oval[:, 1] >= h))
        if outside > cfg.max_outside:
            return f"partly outside the frame ({outside:.0%})"
        if score < cfg.min_score:
            return f"low detection confidence {score:.2f} (likely occluded)"
        return None


def _drop_duplicates(faces: list[DetectedFace], max_iou: float = 0.5) -> list[DetectedFace]:
    """Two detector boxes can land on one face; keep the better-scored one."""
    kept: list[DetectedFace] = []
    for face in sorted(faces, key=lambda f: -f.score):
        if all(box_iou(face.box, k.box) < max_iou for k in kept):
            kept.append(face)
    return kept


def box_iou(a, b) -> float:
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax2, bx2) - max(a[0], b[0]))
    ih = max(0.0, min(ay2, by2) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def face_scale(landmarks: np.ndarray) -> float:
    """A size of the face in pixels that does not change with expression: eye-corner distance."""
    return float(np.linalg.norm(landmarks[263] - landmarks[33]))
