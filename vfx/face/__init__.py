"""Faces through a shot: detection, tracks, identity, rejuvenation, lip-sync, audio features."""
from __future__ import annotations

from typing import Any


def build_face_steps(face: Any, gate: Any | None) -> list:
    """The face steps ``face`` (a FaceConfig) asks for: ``DetectFaces`` first (it finds, tracks and
    consent-decides every face once), then each likeness edit, which only reads ``batch.faces``."""
    if face.rejuvenate is None and face.lipsync is None:
        return []
    from vfx.errors import VfxError
    from vfx.face.lipsync import LipSync
    from vfx.face.rejuvenate import Rejuvenate
    from vfx.face.scrfd import face_detector
    from vfx.face.tracks import DetectFaces

    if gate is None:
        raise VfxError("face edits run only through the consent gate (--project)")
    if face.backend not in ("auto", "classic", "onnx"):
        raise VfxError(f"face backend {face.backend!r}: expected auto, classic or onnx")
    backend = "onnx" if face.backend == "onnx" else "classic"
    edits: list = []
    if face.rejuvenate is not None:
        edits.append(Rejuvenate(gate, face.rejuvenate, backend=backend, hair=face.rejuvenate_hair,
                                model_path=_onnx_model("face_age_onnx", "face_age.onnx") if backend == "onnx" else None))
    if face.lipsync is not None:
        edits.append(LipSync(gate, face.lipsync, backend=backend,
                             model_path=_onnx_model("face_lipsync_onnx", "face_lipsync.onnx") if backend == "onnx" else None))
    detect = DetectFaces(face_detector(face.detector, face.allow_noncommercial), gate, tuple(e.operation for e in edits))
    return [detect, *edits]


def _onnx_model(name: str, filename: str) -> str:
    from vfx.models import ModelStore

    return str(ModelStore().require(name) / filename)
