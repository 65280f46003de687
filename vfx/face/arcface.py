"""Face identity with insightface ArcFace (ONNX, onnxruntime), weights imported into the model store.

Interface (declared for the store in configs/models.yaml, entry ``arcface_r100``): one input
float32 [1,3,112,112], RGB, (x - 127.5) / 127.5, the face aligned to the standard ArcFace 112x112
template; one output float32 [1,512]. The input/output names come from the manifest entry, since
exports of the same network name them differently ("data"/"fc1", "input.1"/"683").

Alignment: dlib's 5 landmarks (two corners of each eye, base of the nose) give the two eye centres
and the nose base; a similarity transform (cv2.estimateAffinePartial2D, least squares over the three
points) maps them onto the template's eye centres and a nose-base point a quarter of the way from the
template's nose tip to its mouth line (dlib has no mouth corners in its 5-point model).

Distance semantics: embeddings are L2-normalised; compare with the cosine distance 1 - cos
(``cosine_distance``), 0 for the same direction, 1 for orthogonal, 2 for opposite.
"""
from __future__ import annotations

import functools
from pathlib import Path

import cv2
import numpy as np

from vfx.errors import VfxError
from vfx.face.identity import Box, five_point_landmarks
from vfx.face.onnx_backends import open_session
from vfx.hashing import sha256_file

MODEL = "arcface_r100"
ALIGN_SIZE = 112
EMBEDDING_SIZE = 512
# insightface's ArcFace template: eye on the image's left, eye on the image's right, nose tip,
# mouth corners (left, right), in pixels of the 112x112 crop.
ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                             [41.5493, 92.3655], [70.7299, 92.2041]], np.float32)
_NOSE_BASE = ARCFACE_TEMPLATE[2] + 0.25 * (ARCFACE_TEMPLATE[3:5].mean(0) - ARCFACE_TEMPLATE[2])
DLIB_TARGETS = np.stack([ARCFACE_TEMPLATE[0], ARCFACE_TEMPLATE[1], _NOSE_BASE]).astype(np.float32)


def anchors_from_dlib(points: np.ndarray) -> np.ndarray:
    """dlib 5 points [5,2] -> [3,2]: image-left eye centre, image-right eye centre, nose base."""
    return np.stack([points[2:4].mean(0), points[0:2].mean(0), points[4]]).astype(np.float32)


def alignment_transform(points: np.ndarray) -> np.ndarray:
    """The 2x3 similarity transform taking the image onto the 112x112 ArcFace crop."""
    matrix, _ = cv2.estimateAffinePartial2D(anchors_from_dlib(points), DLIB_TARGETS, method=cv2.RANSAC,
                                            ransacReprojThreshold=1e4)  # every point an inlier: least squares
    if matrix is None:
        raise VfxError("face alignment failed: degenerate landmarks")
    return matrix.astype(np.float32)


def align(image_rgb: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The face warped onto the ArcFace template, uint8 RGB [112,112,3]."""
    return cv2.warpAffine(image_rgb, alignment_transform(points), (ALIGN_SIZE, ALIGN_SIZE),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def cosine_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """1 - cos between L2-normalised embeddings; broadcasts ([512] vs [N,512] -> [N])."""
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    return 1.0 - np.sum(_normalise(a) * _normalise(b), axis=-1)


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


class ArcFaceEmbedder:
    """Aligned 112x112 crop -> ArcFace ONNX -> L2-normalised 512-d embedding."""

    def __init__(self, model_path: str | Path, input_name: str, output_name: str):
        self.path = Path(model_path)
        self.input_name, self.output_name = input_name, output_name
        self.session = open_session(str(self.path), {input_name: [1, 3, ALIGN_SIZE, ALIGN_SIZE]},
                                    {output_name: [1, EMBEDDING_SIZE]})

    def embed_crop(self, crop_rgb: np.ndarray) -> np.ndarray:
        x = ((crop_rgb.astype(np.float32) - 127.5) / 127.5).transpose(2, 0, 1)[None]
        y = np.asarray(self.session.run([self.output_name], {self.input_name: x})[0], np.float32).reshape(-1)
        if y.shape != (EMBEDDING_SIZE,) or not np.all(np.isfinite(y)):
            raise VfxError(f"{self.path}: ArcFace output is not a finite {EMBEDDING_SIZE}-d vector")
        return _normalise(y)

    def __call__(self, image_rgb: np.ndarray, boxes: list[Box]) -> np.ndarray:
        """float32 [N, 512] unit vectors, one per box."""
        points = five_point_landmarks(image_rgb, boxes)
        out = np.zeros((len(boxes), EMBEDDING_SIZE), np.float32)
        for i, pts in enumerate(points):
            out[i] = self.embed_crop(align(image_rgb, pts))
        return out


def io_names(architecture: dict) -> tuple[str, str]:
    """The single input and output names declared for the model in the manifest."""
    inputs, outputs = architecture.get("inputs") or {}, architecture.get("outputs") or {}
    if len(inputs) != 1 or len(outputs) != 1:
        raise VfxError(f"model {MODEL}: the manifest must declare one input and one output under architecture")
    return next(iter(inputs)), next(iter(outputs))


@functools.lru_cache(maxsize=4)
def _load(path: str, input_name: str, output_name: str) -> ArcFaceEmbedder:
    return ArcFaceEmbedder(path, input_name, output_name)


def load_embedder(model: str = MODEL) -> tuple[ArcFaceEmbedder, str]:
    """The embedder from the model store (checked against its sha256) and the file's sha256."""
    from vfx.models import ModelStore

    store = ModelStore()
    entry = store.manifest.entry(model)
    if entry.kind != "face_identity":
        raise VfxError(f"model {model} is a {entry.kind} model, not face_identity")
    path = store.require(model) / entry.files[0].path
    input_name, output_name = io_names(entry.architecture)
    return _load(str(path), input_name, output_name), sha256_file(path)
