"""Subject mattes. Each backend registers with ``vfx.registry``; ``build_segmenter`` is a shortcut."""
from __future__ import annotations

from vfx.config import PipelineConfig, SegmentConfig
from vfx.frames import Step
from vfx.registry import Backend, BuildContext, build, choose, register
from vfx.segment.person import PersonSegmenter
from vfx.segment.prompt import PromptSegmenter
from vfx.segment.prompts import SubjectSpec, parse_subject
from vfx.segment.subjects import SubjectSet


def _subject(config: PipelineConfig) -> SubjectSpec:
    return parse_subject(config.segment.subject)


def _takes(*kinds: str):
    def serves(config: PipelineConfig) -> str | None:
        spec = _subject(config)
        if spec.subjects:
            return "several subjects: the subjects backend builds one segmenter each (leave the segmenter on auto)"
        return None if spec.kind in kinds else f"cannot take a {spec.kind} subject"
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


def _sam2(ctx: BuildContext) -> Step:
    from vfx.models import ModelStore
    from vfx.segment.sam2 import Sam2VideoSegmenter, load_sam2

    sam2 = load_sam2(ModelStore(), ctx.choice.model, ctx.device)
    return Sam2VideoSegmenter(_subject(ctx.config).prompts, sam2, feather_px=ctx.config.segment.feather_px)


def _subjects(ctx: BuildContext) -> Step:
    """Several --subject: each gets the backend auto picks for it alone, and its own matte."""
    steps = {}
    for spec in _subject(ctx.config).subjects:
        segment = ctx.config.segment.model_copy(update={"subject": [spec.text], "backend": "auto"})
        config = ctx.config.model_copy(update={"segment": segment})
        steps[spec.id] = build(choose("segment", config, ctx.device), config, ctx.device)
    return SubjectSet(steps)


register(Backend("segment", "subjects", _subjects, licence="that of each subject's backend",
                 serves=lambda config: None if _subject(config).subjects else "one subject", rank=1))
register(Backend("segment", "sam2", _sam2, model_kind="sam2", needs_gpu=True, serves=_takes("prompt"), rank=5))
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
