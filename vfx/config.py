"""Pydantic schemas for configs/*.yaml. Command-line options override the file's values."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vfx.errors import VfxError


class SegmentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subject: list[str] = Field(default_factory=list, description="person | box:x,y,w,h@F | point:x,y@F (+ more)")
    backend: str = "auto"  # auto | person | prompt | sam
    feather_px: float = Field(6.0, ge=0)
    smoothing: float = Field(0.6, gt=0, le=1, description="weight of the newest frame in the matte's moving average")
    person_tile_px: int = Field(256, ge=0, description="tile size for finding distant people (0: whole frame only)")
    model: str | None = Field(None, description="SAM model from the store (configs/models.yaml); default: the first present")
    allow_noncommercial: bool = Field(False, description="let auto pick models whose licence forbids commercial use")
    stored_mattes: str | None = Field(None, description="folder of a tracking pass's mattes to replay (backend stored)")


class RestyleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    style: str | None = None
    style_image: str | None = None
    backend: str = "auto"  # auto | classic | diffusion
    stability: float = Field(6.0, gt=0, description="source change in grey levels at which restyled pixels update fully")
    prompt: str | None = None
    negative_prompt: str | None = None
    strength: float = Field(0.5, ge=0, le=1)
    steps: int = Field(2, ge=1)
    seed: int = 0
    model: str | None = Field(None, description="diffusion model from the store; default: the first present")
    guidance_scale: float | None = Field(None, ge=0, description="classifier-free guidance; default: the model's")
    controlnet: str | None = Field(None, description="ControlNet model from the store, e.g. controlnet_canny_sd15")
    controlnet_scale: float = Field(0.8, ge=0)
    max_side: int = Field(768, ge=64, description="longest side the diffusion model works at; output is resized back")
    allow_noncommercial: bool = Field(False, description="let auto pick models whose licence forbids commercial use")
    # neural restyle (vfx/restyle/neural.py)
    style_strength: float = Field(1.0, ge=0, le=1, description="neural: 1 = the painting's style, 0 = the shot's own")
    preserve_colour: bool = Field(False, description="neural: keep the source's colours, take the painting's strokes")
    neural_size: int = Field(384, ge=128, le=2048, description="neural: longest side the network paints at (stroke scale; the arbitrary network was trained at 384)")
    neural_every: int = Field(6, ge=1, le=8, description="neural: run the network at least every Nth frame (and at every cut, and sooner once new content appears); the frames between carry its painting along the flow")
    neural_carry: int = Field(768, ge=128, le=8192, description="neural: longest side the painting is carried along the flow at; larger frames get their finest detail from each frame itself (cost grows with this squared)")
    temporal: float = Field(0.995, ge=0, lt=1, description="neural: weight of the flow-carried previous painting where flows agree and the source did not change")


class FaceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rejuvenate: float | None = Field(None, ge=0, le=1)
    rejuvenate_hair: bool = Field(False, description="rejuvenate also darkens grey hair, brows and beard near the face")
    lipsync: str | None = None
    backend: str = "auto"
    detector: Literal["mediapipe", "scrfd"] = Field("mediapipe", description="face boxes: mediapipe (embedded) or scrfd (model store)")
    allow_noncommercial: bool = Field(False, description="allow face models whose licence forbids commercial use (scrfd)")


class ConsentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    project: str | None = None
    policy: Literal["skip", "fail"] = "skip"
    db: str | None = None
    identity_backend: Literal["auto", "dlib", "arcface"] = "auto"  # auto: the enrolled subjects' backend
    allow_noncommercial: bool = False  # opt in to identity models licensed for non-commercial use (arcface)


class OutputConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    crf: int = Field(18, ge=0, le=51)
    preset: str = "veryfast"
    keep_audio: bool = True
    on_bad_frames: Literal["conceal", "fail"] = "conceal"
    provenance: bool = Field(True, description="sign a provenance sidecar (and C2PA for MP4/MOV) for every output")
    lossless_rgb: bool = Field(False, description="lossless RGB H.264 (libx264rgb) for intermediates encoded again later")


class PipelineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    segment: SegmentConfig = Field(default_factory=SegmentConfig)
    restyle: RestyleConfig = Field(default_factory=RestyleConfig)
    face: FaceConfig = Field(default_factory=FaceConfig)
    consent: ConsentConfig = Field(default_factory=ConsentConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    device: str = "auto"
    batch_size: int | None = Field(None, ge=1)
    queue_depth: int = Field(2, ge=1)


def load_pipeline_config(path: str | Path | None) -> PipelineConfig:
    if path is None:
        return PipelineConfig()
    data = _read_yaml(path)
    try:
        return PipelineConfig.model_validate(data or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise VfxError(f"{path}: {where}: {first['msg']}") from None


def _read_yaml(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise VfxError(f"{path}: config file not found")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise VfxError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None


def with_overrides(config: PipelineConfig, overrides: dict[str, Any]) -> PipelineConfig:
    """Apply dotted overrides such as ``{"restyle.style": "oil"}``; ``None`` values are ignored."""
    data = config.model_dump()
    for dotted, value in overrides.items():
        if value is None:
            continue
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node[key]
        node[leaf] = value
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise VfxError(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None
