"""The job config a client may send: vfx's PipelineConfig with service-side bounds on every field.

The command line trusts its operator; the service does not. Sizes, counts and steps get upper
bounds (a batch of 10 000 frames or 10 000 diffusion steps is a denial of service), free text
gets a length and a character set, the encoder preset is an enumeration, and file paths (a style
picture, dub audio) must lie under the service's input roots; the gateway copies and probes
them like a shot. The consent ledger is the service's own: a client cannot point a job at another.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, ValidationError

from serving.untrusted import Refused
from vfx.config import ConsentConfig, FaceConfig, OutputConfig, PipelineConfig, RestyleConfig, SegmentConfig

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"  # style, backend and model names
Name = Field(None, pattern=NAME)
X264_PRESET = Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"]


class BoundedSegment(SegmentConfig):
    subject: list[Annotated[str, Field(max_length=200)]] = Field(default_factory=list, max_length=16)
    backend: Literal["auto", "person", "prompt", "sam"] = "auto"
    feather_px: float = Field(6.0, ge=0, le=64)
    person_tile_px: int = Field(256, ge=0, le=2048)
    model: str | None = Name
    stored_mattes: None = Field(None, description="set by the service's own tracking pass, never by a client")


class BoundedRestyle(RestyleConfig):
    style: str | None = Name
    style_image: str | None = Field(None, max_length=1000, description="a picture under the service's input roots")
    backend: Literal["auto", "classic", "diffusion"] = "auto"
    stability: float = Field(6.0, gt=0, le=255)
    prompt: str | None = Field(None, max_length=1000)
    negative_prompt: str | None = Field(None, max_length=1000)
    steps: int = Field(2, ge=1, le=50)
    seed: int = Field(0, ge=0, le=2**32 - 1)
    model: str | None = Name
    guidance_scale: float | None = Field(None, ge=0, le=30)
    controlnet: str | None = Name
    controlnet_scale: float = Field(0.8, ge=0, le=2)
    max_side: int = Field(768, ge=64, le=2048)


class BoundedFace(FaceConfig):
    lipsync: str | None = Field(None, max_length=1000, description="dub audio under the service's input roots")
    backend: Literal["auto", "classic", "onnx"] = "auto"


class BoundedConsent(ConsentConfig):
    project: str | None = Field(None, max_length=200)
    db: None = Field(None, description="always the service's consent ledger")


class BoundedOutput(OutputConfig):
    preset: X264_PRESET = "veryfast"
    lossless_rgb: Literal[False] = Field(False, description="for the service's chunk intermediates only")


class ServiceJobConfig(PipelineConfig):
    model_config = ConfigDict(extra="forbid")
    segment: BoundedSegment = Field(default_factory=BoundedSegment)
    restyle: BoundedRestyle = Field(default_factory=BoundedRestyle)
    face: BoundedFace = Field(default_factory=BoundedFace)
    consent: BoundedConsent = Field(default_factory=BoundedConsent)
    output: BoundedOutput = Field(default_factory=BoundedOutput)
    device: str = Field("auto", pattern=r"^(auto|cpu|mps|cuda(:[0-9]{1,2})?)$")
    batch_size: int | None = Field(None, ge=1, le=64)
    queue_depth: int = Field(2, ge=1, le=8)


def parse_job_config(text: str, consent_db: str | None, input_roots: list[str]) -> PipelineConfig:
    """The client's JSON as a PipelineConfig within the service's bounds; Refused(422) with the first problem,
    Refused(403) for a side input (style picture, dub audio) outside the input roots."""
    try:
        bounded = ServiceJobConfig.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise Refused(422, f"config: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    data = bounded.model_dump()
    data["consent"]["db"] = consent_db
    config = PipelineConfig.model_validate(data)
    for what, path in side_inputs(config).items():
        under_roots(path, input_roots, what)
    return config


def side_inputs(config: PipelineConfig) -> dict[str, str]:
    """Files a config names besides the shot: {"style_image": path, "lipsync": path}."""
    named = {"style_image": config.restyle.style_image, "lipsync": config.face.lipsync}
    return {what: path for what, path in named.items() if path}


def under_roots(path: str, roots: list[str], what: str) -> Path:
    """``path`` resolved (symlinks followed) if it lies under an input root; Refused(403/404) otherwise."""
    if "://" in path or path.startswith(("concat:", "pipe:", "file:")):
        raise Refused(422, f"{what}: only local files are accepted, not URLs or protocols")
    try:
        resolved = Path(path).resolve()
        inside = any(resolved.is_relative_to(Path(r).expanduser().resolve()) for r in roots)
        found = inside and resolved.is_file()
    except (ValueError, OSError):  # a NUL byte, an unpaired surrogate, a name too long: the OS raises, not answers
        raise Refused(422, f"{what}: not a path the OS can look up (a NUL byte, an unpaired surrogate or a name too long)") from None
    if not inside:
        raise Refused(403, f"{what}: path is outside the service's input roots")
    if not found:
        raise Refused(404, f"{what}: {path}: no such file")
    return resolved
