"""``vfx run`` and ``vfx demo``: the main job from the command line."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional

import typer

from vfx.config import load_pipeline_config, with_overrides
from vfx.errors import VfxError
from vfx.frames import frame_ranges
from vfx.job import JobResult, JobSpec, check_job, run_job
from vfx.progress import frame_progress
from vfx.restyle.styles import STYLE_DESCRIPTIONS

log = logging.getLogger("vfx")

STYLE_HELP = ("Look for the surroundings: " + "; ".join(f"{k} ({v})" for k, v in STYLE_DESCRIPTIONS.items())
              + "; or a neural style: 0-25, a name (starry, impasto, mosaic... see `vfx styles`), or a blend like starry:0.7,3:0.3.")


def run(
    input: str = typer.Argument(..., help="Video file (MP4, MOV, AVI, MKV...) or image sequence pattern like shot.%04d.exr."),
    output: str = typer.Option(..., "-o", "--output", help="Output .mp4/.mov/.mkv (H.264, audio kept) or sequence pattern like out.%04d.png / .exr (matte in alpha)."),
    subject: Optional[list[str]] = typer.Option(None, "--subject", "-s", help="person | box:x,y,w,h@FRAME | point:x,y@FRAME | negpoint:x,y@FRAME; join prompts with + or repeat the option."),
    style: Optional[str] = typer.Option(None, "--style", help=STYLE_HELP),
    style_image: Optional[str] = typer.Option(None, "--style-image", help="Paint the surroundings in the style of this picture (e.g. starry_night.jpg; neural restyle)."),
    preserve_colour: bool = typer.Option(False, "--preserve-colour", help="Neural restyle: the painting's strokes, the footage's colours."),
    matte: Optional[str] = typer.Option(None, "--matte", help="Also write the subject matte: grayscale .mp4 or a PNG sequence pattern."),
    frames: Optional[str] = typer.Option(None, "--frames", help="Inclusive frame range FIRST-LAST (0-based for video files, file numbers for sequences), e.g. 1001-1100."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Frames per batch (default: 8 on CPU, from free memory on CUDA)."),
    config: Optional[str] = typer.Option(None, "--config", help="Pipeline YAML (e.g. configs/documentary.yaml); options given here override it."),
    segmenter: Optional[str] = typer.Option(None, "--segmenter", help="auto | person | prompt | sam."),
    restyler: Optional[str] = typer.Option(None, "--restyler", help="auto | neural | classic | diffusion."),
    prompt: Optional[str] = typer.Option(None, "--prompt", help="Diffusion restyle: text describing the new surroundings."),
    negative_prompt: Optional[str] = typer.Option(None, "--negative-prompt", help="Diffusion restyle: what to avoid."),
    strength: Optional[float] = typer.Option(None, "--strength", min=0.0, max=1.0, help="How far from the source (0..1): neural style strength (default 1), diffusion denoising strength (default 0.5)."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Diffusion restyle: denoising steps."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Diffusion restyle: one seed for the whole shot."),
    model: Optional[str] = typer.Option(None, "--model", help="Model from the store for the chosen model backend (e.g. sam_vit_h, sd15); see `vfx models list`."),
    controlnet: Optional[str] = typer.Option(None, "--controlnet", help="Diffusion restyle: ControlNet from the store that holds the scene's structure (e.g. controlnet_canny_sd15)."),
    allow_noncommercial: bool = typer.Option(False, "--allow-noncommercial", help="Let auto pick models whose licence forbids commercial use."),
    face_backend: Optional[str] = typer.Option(None, "--face-backend", help="Face edits: auto | classic | onnx (ONNX models from the store)."),
    face_detector: Optional[str] = typer.Option(None, "--face-detector", help="Face boxes: mediapipe (default) | scrfd (insightface, non-commercial: needs --allow-noncommercial)."),
    device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda | cuda:N."),
    feather: Optional[float] = typer.Option(None, "--feather", min=0.0, help="Matte edge feather in pixels (outward; the subject itself stays exact)."),
    rejuvenate: Optional[float] = typer.Option(None, "--rejuvenate", min=0.0, max=1.0, help="De-age consented faces by this strength (needs --project and a grant)."),
    rejuvenate_hair: bool = typer.Option(False, "--rejuvenate-hair", help="With --rejuvenate: also darken grey hair, brows and beard near the face."),
    lipsync: Optional[str] = typer.Option(None, "--lipsync", help="Re-sync consented faces' lips to this audio file; the output carries it (needs --project and a grant)."),
    project: Optional[str] = typer.Option(None, "--project", help="Consent project whose grants allow face edits."),
    consent_policy: Optional[str] = typer.Option(None, "--consent-policy", help="skip (edit only consented faces) | fail (refuse the job if any face is refused)."),
    strict: bool = typer.Option(False, "--strict", help="Refuse a damaged input instead of concealing undecodable frames."),
    provenance: bool = typer.Option(True, "--provenance/--no-provenance", help="Sign a provenance sidecar and embed C2PA (MP4/MOV)."),
    preview: Optional[str] = typer.Option(None, "--preview", help="Also write a before/after contact sheet PNG here."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Mask the subject, restyle its surroundings, keep the subject untouched; write OUTPUT."""
    pipeline = with_overrides(load_pipeline_config(config), {
        "segment.subject": subject, "segment.backend": segmenter, "segment.feather_px": feather,
        "restyle.style": style, "restyle.style_image": style_image, "restyle.backend": restyler,
        "restyle.prompt": prompt, "restyle.negative_prompt": negative_prompt, "restyle.strength": strength,
        "restyle.style_strength": strength, "restyle.preserve_colour": preserve_colour or None,
        "restyle.steps": steps, "restyle.seed": seed, "face.rejuvenate": rejuvenate, "face.lipsync": lipsync,
        "segment.model": model if (segmenter or "").startswith("sam") else None,
        "restyle.model": model if restyler == "diffusion" else None, "restyle.controlnet": controlnet,
        "segment.allow_noncommercial": allow_noncommercial or None, "restyle.allow_noncommercial": allow_noncommercial or None,
        "face.allow_noncommercial": allow_noncommercial or None, "face.detector": face_detector,
        "face.rejuvenate_hair": rejuvenate_hair or None,
        "face.backend": face_backend, "consent.project": project, "consent.policy": consent_policy, "device": device, "batch_size": batch_size,
        "output.on_bad_frames": "fail" if strict else None, "output.provenance": None if provenance else False,
    })
    result = _run_with_progress(JobSpec(input=input, output=output, config=pipeline, frames=frames, matte=matte), quiet)
    if preview:
        from vfx.preview import write_before_after

        write_before_after(input, output, result.frame_range, preview, matte=matte)
        typer.echo(f"contact sheet: {preview}")


def _run_with_progress(spec: JobSpec, quiet: bool) -> JobResult:
    check_job(spec)  # a refused job says so before a progress bar appears
    with frame_progress(Path(spec.input).name, enabled=not quiet) as bar:
        result = run_job(spec, progress=bar.advance, on_start=bar.start)
    if result.bad_frames:
        typer.echo(f"vfx: warning: {len(result.bad_frames)} frame(s) could not be decoded and were concealed "
                   f"with the previous good frame: {_ranges(result.bad_frames)}", err=True)
    if result.grant_ids:
        typer.echo(f"face edits under grants: {', '.join(result.grant_ids)}")
    if result.provenance:
        typer.echo(f"provenance: {result.provenance}")
    typer.echo(f"{result.output}: {result.frames} frames in {result.seconds:.1f} s ({result.fps:.1f} frames/s), "
               f"{' -> '.join(f'{k}:{v}' for k, v in result.backends.items())} on {result.device}, batch {result.batch_size}")
    return result


def _ranges(numbers: list[int]) -> str:
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in frame_ranges(numbers))


def find_samples(explicit: str | None) -> Path:
    candidates = [explicit, os.environ.get("VFX_SAMPLES"), "samples", "../shared/samples",
                  str(Path(__file__).resolve().parents[2] / "shared" / "samples")]
    for candidate in filter(None, candidates):
        if (Path(candidate) / "vtest.avi").is_file():
            return Path(candidate)
    raise VfxError("sample footage not found: run `make samples` (Debian's opencv-doc) or pass --samples DIR")


def demo(
    samples: Optional[str] = typer.Option(None, "--samples", help="Folder with vtest.avi, Megamind.avi, starry_night.jpg (default: ./samples or ../shared/samples)."),
    out: str = typer.Option("out", "--out", help="Folder for the demo's outputs."),
    frames: str = typer.Option("0-199", "--frames", help="Frames of vtest.avi to process."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Run the main job on real sample footage and write a before/after contact sheet.

    1. vtest.avi (elevated camera, people walking): people kept, surroundings oil-painted.
    2. Megamind.avi (two faces, AC-3 audio): a boxed character kept, surroundings in the colours of starry_night.jpg.
    """
    from vfx.preview import write_before_after

    folder = find_samples(samples)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = [
        ("people_oil", folder / "vtest.avi", frames, {"segment.subject": ["person"], "restyle.style": "oil"}),
        ("character_starry", folder / "Megamind.avi", "1-97",  # one shot: cuts at 1 and 98
         {"segment.subject": ["box:80,0,330,528@40"], "restyle.style": "oil",
          "restyle.style_image": str(folder / "starry_night.jpg")}),
    ]
    for name, source, frame_range, overrides in jobs:
        spec = JobSpec(input=str(source), output=str(out_dir / f"{name}.mp4"), frames=frame_range,
                       matte=str(out_dir / f"{name}_matte.mp4"), config=with_overrides(load_pipeline_config(None), overrides))
        result = _run_with_progress(spec, quiet)
        sheet = write_before_after(spec.input, spec.output, result.frame_range, out_dir / f"{name}_before_after.png", matte=spec.matte)
        typer.echo(f"contact sheet: {sheet}")


def register(app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("demo")(demo)
