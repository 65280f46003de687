"""Face identity backends: dlib ResNet (default, bundled) and insightface ArcFace (model store, opt-in).

Embeddings of different backends are not comparable, so every enrolled subject records the
backend that made its embeddings (``stored`` name) and the consent gate embeds faces with that
same backend. Each backend has its own distance and default match threshold:

- dlib: Euclidean distance of 128-d embeddings, threshold 0.55 (see vfx.face.identity).
- arcface: cosine distance 1 - cos of L2-normalised 512-d embeddings, threshold 0.6 (insightface's
  verification thresholds sit around cos 0.3-0.4 for same/different people on real photos).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from vfx.errors import VfxError
from vfx.face.identity import Box

IdentityName = Literal["dlib", "arcface"]


@dataclass(frozen=True)
class IdentityBackend:
    name: IdentityName
    stored: str  # recorded with each subject and in the ledger
    size: int  # embedding length
    threshold: float  # default gate match threshold in this backend's distance
    consistency: float  # enrolment: faces farther than this from the medoid are another person
    embed: Callable[[np.ndarray, list[Box]], np.ndarray] = field(repr=False)
    distance: Callable[[np.ndarray, np.ndarray], np.ndarray] = field(repr=False)
    model_hashes: dict[str, str] = field(default_factory=dict)
    licence: str = ""


def dlib_backend() -> IdentityBackend:
    from vfx.face import identity

    return IdentityBackend("dlib", "dlib-resnet-v1", identity.EMBEDDING_SIZE, 0.55, 0.6, identity.embed_faces,
                           identity.identity_distance, identity.model_hashes(), "dlib-models: CC0 (5-point predictor, ResNet v1)")


def arcface_licence() -> tuple[str, bool]:
    """The arcface_r100 manifest entry's licence line and whether it allows commercial use."""
    from vfx.face.arcface import MODEL
    from vfx.models import load_manifest

    entry = load_manifest().entry(MODEL)
    return entry.licence, entry.commercial_use


def arcface_backend(model: str) -> IdentityBackend:
    """ArcFace from the store; the registry has already checked its licence against the opt-in."""
    from vfx.face.arcface import EMBEDDING_SIZE, cosine_distance, load_embedder
    from vfx.models import load_manifest

    embedder, digest = load_embedder(model)
    return IdentityBackend("arcface", "arcface-r100", EMBEDDING_SIZE, 0.6, 0.8, embedder, cosine_distance,
                           {model: digest}, load_manifest().entry(model).licence)


STORED: dict[str, str] = {"dlib-resnet-v1": "dlib", "arcface-r100": "arcface"}
SIZES: dict[str, int] = {"dlib-resnet-v1": 128, "arcface-r100": 512}


def identity_backend(name: str, allow_noncommercial: bool = False) -> IdentityBackend:
    """The identity embedder ``name`` (dlib | arcface), chosen through the registry."""
    from vfx.face.backends import identity_backend as through_registry

    return through_registry(name, allow_noncommercial)


def backend_of_stored(stored: str) -> str:
    """The backend name ("dlib"/"arcface") of a subject's recorded backend."""
    if stored not in STORED:
        raise VfxError(f"unknown identity backend {stored!r} recorded with a subject; known: {', '.join(STORED)}")
    return STORED[stored]
