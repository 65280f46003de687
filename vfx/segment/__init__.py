"""Subject mattes. Each backend registers with ``vfx.registry``; ``build_segmenter`` is a shortcut."""
from __future__ import annotations

from vfx.config import PipelineConfig, SegmentConfig
from vfx.frames import Step
from vfx.registry import Backend, BuildContext, build, choose, register
from vfx.segment.person import PersonSegmenter
from vfx.segment.prompt import PromptSegmenter
from vfx.segment.prompts import SubjectSpec, parse_subject


def _subject(config: PipelineConfig) -> SubjectSpec:
    return parse_subject(config.segment.subject)


def _takes(*kinds: str):
    def serves(config: PipelineConfig) -> str | None:
        kind = _subject(config).kind
        return None if kind in kinds else f"cannot take a {kind} subject"
    return serves


def _person(ctx: BuildContext) -> Step:
    segment = ctx.config.segment
    return PersonSegmenter(feather_px=segment.feather_px, smoothing=segment.smoothing, tile_px=segment.person_tile_px)


def _prompt(ctx: BuildContext) -> Step:
    return PromptSegmenter(_subject(ctx.config).prompts, feather_px=ctx.config.segment.feather_px)


def _sam(ctx: BuildContext) -> Step:
    from vfx.models import ModelStore
    from vfx.segment.sam import SamPersonSegmenter, SamSegmenter, load_sam

    segment, spec = ctx.config.segment, _subject(ctx.config)
    model = ctx.choice.model
    sam = SamSegmenter(spec.prompt, load_sam(ModelStore(), model, ctx.device), ctx.device, model, feather_px=segment.feather_px)
    if spec.kind == "person":
        return SamPersonSegmenter(sam, PersonSegmenter(feather_px=0, smoothing=segment.smoothing, tile_px=segment.person_tile_px))
    return sam


def _sam_serves(config: PipelineConfig) -> str | None:
    if len(_subject(config).prompts) > 1:
        return "one key frame per subject (the prompt segmenter takes several)"
    return _takes("prompt", "person")(config)


register(Backend("segment", "sam", _sam, model_kind="sam", needs_gpu=True, serves=_sam_serves, rank=10))
register(Backend("segment", "person", _person, licence="Apache-2.0 (mediapipe selfie segmentation, bundled)",
                 serves=_takes("person"), rank=50))
register(Backend("segment", "prompt", _prompt, licence="Apache-2.0 (OpenCV GrabCut + DIS flow)",
                 serves=_takes("prompt"), rank=50))


def build_segmenter(config: SegmentConfig, device: str) -> Step | None:
    """The segmentation step a config asks for (None without a subject)."""
    pipeline = PipelineConfig(segment=config)
    if parse_subject(config.subject).kind == "none":
        return None
    return build(choose("segment", pipeline, device), pipeline, device)


__all__ = ["build_segmenter", "parse_subject", "SubjectSpec", "PersonSegmenter", "PromptSegmenter"]
