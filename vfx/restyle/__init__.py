"""Restyle the surroundings. Backends sit side by side in ``RESTYLERS``; ``build_restyler`` picks one."""
from __future__ import annotations

import logging
from collections.abc import Callable

from vfx.config import RestyleConfig
from vfx.errors import VfxError
from vfx.frames import Step
from vfx.restyle.classic import ClassicRestyle
from vfx.restyle.composite import composite
from vfx.restyle.styles import STYLE_DESCRIPTIONS, STYLES
from vfx.video.sequence import read_image_rgb

log = logging.getLogger(__name__)


def _classic(config: RestyleConfig, device: str) -> Step:
    reference = None
    if config.style_image:
        from pathlib import Path

        if not Path(config.style_image).is_file():
            raise VfxError(f"--style-image {config.style_image}: no such file")
        reference = read_image_rgb(Path(config.style_image))
    return ClassicRestyle(style=config.style, style_image=reference, stability=config.stability)


def _diffusion(config: RestyleConfig, device: str) -> Step:
    from vfx.models import ModelStore, choose_model
    from vfx.restyle.diffusion import DiffusionRestyle, load_diffusion

    if not config.prompt:
        raise VfxError("restyle backend diffusion needs --prompt")
    store = ModelStore()
    name, why = choose_model(store, "diffusion", config.model, config.allow_noncommercial)
    if name is None:
        raise VfxError(f"restyle backend diffusion: {why}")
    log.info("restyle diffusion: %s, device %s", why, device)
    return DiffusionRestyle(load_diffusion(store, name, device, config.controlnet), config, device)


def _diffusion_available(config: RestyleConfig, device: str) -> str | None:
    from vfx.models import ModelStore, choose_model

    if not config.prompt:
        return "needs --prompt"
    try:
        name, why = choose_model(ModelStore(), "diffusion", config.model, config.allow_noncommercial)
    except VfxError as exc:
        return str(exc)
    return None if name else why


RESTYLERS: dict[str, Callable[[RestyleConfig, str], Step]] = {"classic": _classic, "diffusion": _diffusion}
AUTO_ORDER: list[str] = ["diffusion", "classic"]
AVAILABILITY: dict[str, Callable[[RestyleConfig, str], str | None]] = {
    "classic": lambda config, device: None if (config.style or config.style_image) else "needs --style or --style-image",
    "diffusion": _diffusion_available,
}
# Backends ``auto`` only picks on a GPU; chosen by name they also run on the CPU.
NEEDS_GPU: set[str] = {"diffusion"}


def build_restyler(config: RestyleConfig, device: str) -> Step | None:
    if config.style is None and config.style_image is None and config.prompt is None:
        return None
    if config.backend == "auto":
        reasons = []
        for name in AUTO_ORDER:
            reason = AVAILABILITY.get(name, lambda *_: None)(config, device)
            if reason is None and name in NEEDS_GPU and not device.startswith("cuda"):
                reason = f"no GPU (device {device}); --restyler {name} runs it on the CPU anyway"
            if reason is None:
                log.info("restyle: %s (auto, device %s)", name, device)
                return RESTYLERS[name](config, device)
            log.info("restyle: not %s (%s)", name, reason)
            reasons.append(f"{name}: {reason}")
        raise VfxError(f"no restyle backend is available ({'; '.join(reasons)})")
    if config.backend not in RESTYLERS:
        raise VfxError(f"unknown restyle backend {config.backend!r}; choose auto, {', '.join(RESTYLERS)}")
    reason = AVAILABILITY.get(config.backend, lambda *_: None)(config, device)
    if reason is not None:
        raise VfxError(f"restyle backend {config.backend}: {reason}")
    return RESTYLERS[config.backend](config, device)


__all__ = ["RESTYLERS", "AUTO_ORDER", "AVAILABILITY", "build_restyler", "composite", "STYLES", "STYLE_DESCRIPTIONS"]
