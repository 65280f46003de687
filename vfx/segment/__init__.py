"""Subject mattes. Backends sit side by side in ``SEGMENTERS``; ``build_segmenter`` picks one."""
from __future__ import annotations

import logging
from collections.abc import Callable

from vfx.config import SegmentConfig
from vfx.errors import VfxError
from vfx.frames import Step
from vfx.segment.person import PersonSegmenter
from vfx.segment.prompt import PromptSegmenter
from vfx.segment.prompts import SubjectSpec, parse_subject
from vfx.segment.subjects import SubjectSet

log = logging.getLogger(__name__)


def _person(spec: SubjectSpec, config: SegmentConfig, device: str) -> Step:
    return PersonSegmenter(feather_px=config.feather_px, smoothing=config.smoothing, tile_px=config.person_tile_px)


def _prompt(spec: SubjectSpec, config: SegmentConfig, device: str) -> Step:
    return PromptSegmenter(spec.prompts, feather_px=config.feather_px)


def _sam(spec: SubjectSpec, config: SegmentConfig, device: str) -> Step:
    from vfx.models import ModelStore, choose_model
    from vfx.segment.sam import SamPersonSegmenter, SamSegmenter, load_sam

    if len(spec.prompts) > 1:
        raise VfxError("segmenter sam: one key frame per subject; --segmenter prompt takes several")
    store = ModelStore()
    name, why = choose_model(store, "sam", config.model, config.allow_noncommercial)
    if name is None:
        raise VfxError(f"segmenter sam: {why}")
    log.info("segmenter sam: %s, device %s", why, device)
    sam = SamSegmenter(spec.prompt, load_sam(store, name, device), device, name, feather_px=config.feather_px)
    if spec.kind == "person":
        return SamPersonSegmenter(sam, PersonSegmenter(feather_px=0, smoothing=config.smoothing, tile_px=config.person_tile_px))
    return sam


def _sam_available(device: str) -> str | None:
    from vfx.models import ModelStore, choose_model

    try:
        name, why = choose_model(ModelStore(), "sam", None, False)
    except VfxError as exc:
        return str(exc)
    return None if name else why


# name -> (builder, which subject kinds it serves)
SEGMENTERS: dict[str, tuple[Callable[[SubjectSpec, SegmentConfig, str], Step], set[str]]] = {
    "person": (_person, {"person"}),
    "prompt": (_prompt, {"prompt"}),
    "sam": (_sam, {"prompt", "person"}),
}
# Tried in order by ``auto``: model backends register themselves ahead of the embedded ones.
AUTO_ORDER: list[str] = ["sam", "person", "prompt"]
# name -> function(device) -> reason it cannot run, or None when it can
AVAILABILITY: dict[str, Callable[[str], str | None]] = {"sam": _sam_available}
# Backends ``auto`` only picks on a GPU; chosen by name they also run on the CPU.
NEEDS_GPU: set[str] = {"sam"}


def build_segmenter(config: SegmentConfig, device: str) -> Step | None:
    spec = parse_subject(config.subject)
    if spec.kind == "none":
        return None
    if spec.subjects:  # several subjects: one segmenter each
        return SubjectSet({s.id: build_segmenter(config.model_copy(update={"subject": [s.text]}), device) for s in spec.subjects})
    if config.backend == "auto":
        for name in AUTO_ORDER:
            builder, kinds = SEGMENTERS[name]
            if spec.kind not in kinds:
                continue
            reason = AVAILABILITY.get(name, lambda _: None)(device)
            if reason is None and name in NEEDS_GPU and not device.startswith("cuda"):
                reason = f"no GPU (device {device}); --segmenter {name} runs it on the CPU anyway"
            if reason is None:
                log.info("segmenter: %s (auto: %s subject, device %s)", name, spec.kind, device)
                return builder(spec, config, device)
            log.info("segmenter: not %s (%s)", name, reason)
        raise VfxError(f"no segmentation backend can serve a {spec.kind} subject")
    if config.backend not in SEGMENTERS:
        raise VfxError(f"unknown segmenter {config.backend!r}; choose auto, {', '.join(SEGMENTERS)}")
    builder, kinds = SEGMENTERS[config.backend]
    if spec.kind not in kinds:
        raise VfxError(f"segmenter {config.backend} cannot take a {spec.kind} subject")
    reason = AVAILABILITY.get(config.backend, lambda _: None)(device)
    if reason is not None:
        raise VfxError(f"segmenter {config.backend}: {reason}")
    return builder(spec, config, device)


__all__ = ["SEGMENTERS", "AUTO_ORDER", "AVAILABILITY", "build_segmenter", "parse_subject", "SubjectSpec",
           "PersonSegmenter", "PromptSegmenter"]
