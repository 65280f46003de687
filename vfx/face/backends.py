"""Face backends in the registry: detection, identity, rejuvenation and lip-sync.

Importing this module registers them; nothing heavy is imported until a backend is built.
"""
from __future__ import annotations

from typing import Any

from vfx.config import ConsentConfig, PipelineConfig
from vfx.errors import VfxError
from vfx.registry import Backend, BuildContext, build, choose, register


def _store_file(model: str) -> str:
    from vfx.models import ModelStore

    store = ModelStore()
    return str(store.require(model) / store.manifest.entry(model).files[0].path)


def _operations(config: PipelineConfig) -> tuple[str, ...]:
    """The likeness operations the detection step must ask the consent gate about."""
    face = config.face
    return tuple(op for op, wanted in (("rejuvenate", face.rejuvenate), ("lipsync", face.lipsync)) if wanted is not None)


def _ensemble(ctx: BuildContext) -> Any:
    from vfx.face.detect import FaceDetector
    from vfx.face.tracks import DetectFaces

    return DetectFaces(FaceDetector(), ctx.gate, _operations(ctx.config))


def _scrfd(ctx: BuildContext) -> Any:
    from vfx.face.detect import FaceDetector
    from vfx.face.scrfd import ScrfdDetector
    from vfx.face.tracks import DetectFaces

    boxes = ScrfdDetector(_store_file(ctx.choice.model)).boxes
    return DetectFaces(FaceDetector(extra_sources={"scrfd": boxes}), ctx.gate, _operations(ctx.config))


def _needs_gate(ctx: BuildContext) -> None:
    if ctx.gate is None:
        raise VfxError("face edits run only through the consent gate (--project)")


def _rejuvenate(ctx: BuildContext) -> Any:
    from vfx.face.rejuvenate import Rejuvenate

    _needs_gate(ctx)
    onnx = ctx.choice.backend == "onnx"
    return Rejuvenate(ctx.gate, ctx.config.face.rejuvenate, backend="onnx" if onnx else "classic",
                      model_path=_store_file(ctx.choice.model) if onnx else None, hair=ctx.config.face.rejuvenate_hair)


def _lipsync(ctx: BuildContext) -> Any:
    from vfx.face.lipsync import LipSync

    _needs_gate(ctx)
    onnx = ctx.choice.backend == "onnx"
    return LipSync(ctx.gate, ctx.config.face.lipsync, backend="onnx" if onnx else "classic",
                   model_path=_store_file(ctx.choice.model) if onnx else None)


def _dlib(ctx: BuildContext) -> Any:
    from vfx.face.identity_backends import dlib_backend

    return dlib_backend()


def _arcface(ctx: BuildContext) -> Any:
    from vfx.face.identity_backends import arcface_backend

    return arcface_backend(ctx.choice.model)


EMBEDDED_FACE_LICENCE = "Apache-2.0 (mediapipe face detection + face mesh, bundled); dlib HOG/CNN detectors (Boost, CC0 weights)"
register(Backend("face_detect", "scrfd", _scrfd, models=("scrfd_10g",), rank=10))
register(Backend("face_detect", "mediapipe", _ensemble, licence=EMBEDDED_FACE_LICENCE, rank=50))
register(Backend("identity", "dlib", _dlib, licence="CC0 (dlib-models: 5-point predictor, ResNet v1)", rank=50))
register(Backend("identity", "arcface", _arcface, models=("arcface_r100",), rank=60))
register(Backend("rejuvenate", "onnx", _rejuvenate, model_kind="face_age", needs_gpu=True, rank=10))
register(Backend("rejuvenate", "classic", _rejuvenate, licence=EMBEDDED_FACE_LICENCE, rank=50))
register(Backend("lipsync", "onnx", _lipsync, model_kind="face_lipsync", needs_gpu=True, rank=10))
register(Backend("lipsync", "classic", _lipsync, licence=EMBEDDED_FACE_LICENCE + "; pocketsphinx (BSD)", rank=50))


def identity_backend(name: str, allow_noncommercial: bool = False) -> Any:
    """The identity embedder ``name`` (dlib | arcface), through the registry's licence and availability checks."""
    consent = ConsentConfig.model_construct(identity_backend=name, allow_noncommercial=allow_noncommercial)
    config = PipelineConfig(consent=consent)  # unvalidated: an unknown name gets the registry's one-line error
    return build(choose("identity", config, "cpu"), config, "cpu")
