"""insightface SCRFD face detector (model backend) through onnxruntime, weights from the model store.

SCRFD finds small and profile faces better than mediapipe's detector, so it joins the box sources
of :class:`vfx.face.detect.FaceDetector` (its boxes are fused with the others'); face mesh still runs on each box's crop for the
478 landmarks the edits need, and faces that cannot be edited keep their explicit skip reasons.

Interface (configs/models.yaml, scrfd_10g): one input float32 [1,3,H,W], RGB, (x - 127.5) / 128,
the frame letterboxed into the top-left corner (black padding); nine outputs in insightface's order:
scores [N,1] for strides 8, 16, 32, then box distances [N,4], then keypoint offsets [N,10], with
N = (H/stride) * (W/stride) * 2 anchors (a leading batch axis of 1 is accepted too). Distances and
offsets are in units of the stride, measured from the anchor centre.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from vfx.errors import VfxError
from vfx.face.detect import DetectorConfig, FaceDetector
from vfx.face.onnx_backends import open_session

MODEL_NAME = "scrfd_10g"
MODEL_FILE = "scrfd_10g_bnkps.onnx"
STRIDES = (8, 16, 32)
DEFAULT_INPUT = (640, 640)  # (width, height) when the graph's input size is dynamic
DETECTORS = ("mediapipe", "scrfd")


@dataclass
class ScrfdFace:
    box: tuple[float, float, float, float]  # x, y, w, h in frame pixels
    keypoints: np.ndarray  # float32 [5, 2]: right eye, left eye, nose, right and left mouth corners (image left to right)
    score: float


def _input_size(shape: list) -> tuple[int, int]:
    h, w = shape[2], shape[3]
    if isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0:
        return w, h
    return DEFAULT_INPUT


class ScrfdDetector:
    """Letterbox, run, decode anchors, threshold, NMS; thread-safe (onnxruntime sessions are)."""

    def __init__(self, model_path: str, score_threshold: float = 0.5, nms_iou: float = 0.4):
        self.session = open_session(model_path, {}, {})
        self._check_signature(model_path)
        self.input_name = self.session.get_inputs()[0].name
        self.input_size = _input_size(self.session.get_inputs()[0].shape)
        self.score_threshold, self.nms_iou = score_threshold, nms_iou

    def _check_signature(self, path: str) -> None:
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        shape = inputs[0].shape if len(inputs) == 1 else []
        widths = [o.shape[-1] if o.shape else None for o in outputs]
        if len(shape) != 4 or (isinstance(shape[1], int) and shape[1] != 3):
            raise VfxError(f"{path}: expected one input [1,3,H,W] (SCRFD), model has {[(i.name, i.shape) for i in inputs]}")
        if len(outputs) != 9 or widths != [1, 1, 1, 4, 4, 4, 10, 10, 10]:
            raise VfxError(f"{path}: expected SCRFD's 9 outputs (scores, boxes, keypoints for strides 8/16/32), "
                           f"model has {[(o.name, o.shape) for o in outputs]}")

    def letterbox(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        """The network input [1,3,H,W] and the frame-to-input scale (frame placed at the top left)."""
        width, height = self.input_size
        h, w = image.shape[:2]
        scale = min(width / w, height / h)
        new_w, new_h = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
        canvas = np.zeros((height, width, 3), np.uint8)
        canvas[:new_h, :new_w] = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        blob = (canvas.astype(np.float32) - 127.5) / 128.0
        return blob.transpose(2, 0, 1)[None], scale

    def detect(self, image: np.ndarray) -> list[ScrfdFace]:
        """Faces in one RGB uint8 frame, best score first."""
        if image.dtype != np.uint8 or image.ndim != 3:
            raise VfxError(f"face detection needs an RGB uint8 image, got {image.dtype} {image.shape}")
        blob, scale = self.letterbox(image)
        outputs = self.session.run(None, {self.input_name: blob})
        boxes, keypoints, scores = decode(outputs, blob.shape[3], blob.shape[2], self.score_threshold)
        if not len(scores):
            return []
        xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1) / scale
        keep = np.array(cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), self.score_threshold, self.nms_iou), int).reshape(-1)
        keep = keep[np.argsort(-scores[keep])]
        return [ScrfdFace(tuple(float(v) for v in xywh[i]), (keypoints[i] / scale).astype(np.float32), float(scores[i]))
                for i in keep]

    def boxes(self, image: np.ndarray) -> list[tuple[tuple[float, float, float, float], float]]:
        """The box source :class:`FaceDetector` takes: (x, y, w, h) and score per face."""
        return [(f.box, f.score) for f in self.detect(image)]


def anchor_centres(width: int, height: int, stride: int, anchors: int) -> np.ndarray:
    """[(H/s)*(W/s)*anchors, 2] anchor centres (x, y) in input pixels, row-major, anchors adjacent."""
    ys, xs = np.mgrid[: height // stride, : width // stride]
    centres = np.stack([xs, ys], axis=-1).reshape(-1, 2).astype(np.float32) * stride
    return np.repeat(centres, anchors, axis=0)


def decode(outputs: list[np.ndarray], width: int, height: int, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SCRFD outputs -> boxes [K,4] (x1,y1,x2,y2), keypoints [K,5,2] in input pixels, scores [K]."""
    boxes, keypoints, scores = [], [], []
    for level, stride in enumerate(STRIDES):
        score = outputs[level].reshape(-1)
        cells = (height // stride) * (width // stride)
        if cells == 0 or len(score) % cells:
            raise VfxError(f"SCRFD stride {stride}: {len(score)} scores do not fit a {width}x{height} input")
        centres = anchor_centres(width, height, stride, len(score) // cells)
        dist = outputs[3 + level].reshape(-1, 4) * stride
        offsets = outputs[6 + level].reshape(-1, 5, 2) * stride
        hit = score >= threshold
        c = centres[hit]
        boxes.append(np.concatenate([c - dist[hit, :2], c + dist[hit, 2:]], axis=1))
        keypoints.append(c[:, None, :] + offsets[hit])
        scores.append(score[hit])
    return np.concatenate(boxes), np.concatenate(keypoints), np.concatenate(scores)


def face_detector(kind: str, allow_noncommercial: bool = False, config: DetectorConfig | None = None) -> FaceDetector:
    """The detector ``face.detector`` names: mediapipe (embedded) or scrfd (store model, non-commercial)."""
    if kind == "mediapipe":
        return FaceDetector(config)
    if kind != "scrfd":
        raise VfxError(f"face detector {kind!r}: expected one of {', '.join(DETECTORS)}")
    from vfx.models import ModelStore
    from vfx.models import licence_allows

    store = ModelStore()
    entry = store.manifest.entry(MODEL_NAME)
    if not licence_allows(entry.commercial_use, allow_noncommercial):
        raise VfxError(f"face detector scrfd uses {MODEL_NAME} ({entry.licence}); pass --allow-noncommercial "
                       "(face.allow_noncommercial: true) to use it")
    path = store.require(MODEL_NAME) / entry.files[0].path
    return FaceDetector(config, extra_sources={"scrfd": ScrfdDetector(str(path)).boxes})
