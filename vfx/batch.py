"""``vfx batch SHOTS``: a shot list an editor or coordinator already has, run shot by shot.

A shot list is an OpenTimelineIO timeline (``.otio``, or a CMX 3600 ``.edl`` through OTIO's
adapter) or a CSV with the columns ``input, frames, subject, style, output``. Each shot runs
locally through ``run_job`` or is submitted to a vfx service; one failing shot is reported and the
others still run. The report (JSON) names every shot's frames, time, output and provenance.
"""
from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import typer

from vfx.config import PipelineConfig, load_pipeline_config, with_overrides
from vfx.durable import write_durably
from vfx.errors import VfxError

CSV_COLUMNS = ("input", "frames", "subject", "style", "output")
POLL_S = 1.0


@dataclass
class Shot:
    name: str
    input: str
    output: str
    frames: str | None = None  # FIRST-LAST, inclusive
    subject: list[str] = field(default_factory=list)  # one entry per subject; "+" joins one subject's prompts
    style: str | None = None


@dataclass
class ShotReport:
    name: str
    input: str
    output: str
    status: str  # done | failed
    frames: int = 0
    seconds: float = 0.0
    provenance: str | None = None
    error: str | None = None
    job_id: str | None = None


# -- reading shot lists --------------------------------------------------------------------------
def read_shots(path: str | Path, out_dir: str | Path, edl_rate: float = 24.0) -> list[Shot]:
    path = Path(path)
    if not path.is_file():
        raise VfxError(f"{path}: no such shot list")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        shots = _csv_shots(path, Path(out_dir))
    elif suffix in (".otio", ".edl"):
        shots = _timeline_shots(path, Path(out_dir), edl_rate)
    else:
        raise VfxError(f"{path}: shot lists are .csv, .otio or .edl")
    if not shots:
        raise VfxError(f"{path}: no shots in it")
    outputs = [s.output for s in shots]
    if len(set(outputs)) != len(outputs):
        twice = next(o for o in outputs if outputs.count(o) > 1)
        raise VfxError(f"{path}: two shots write the same output {twice}")
    return shots


def _csv_shots(path: Path, out_dir: Path) -> list[Shot]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("input",) if c not in (reader.fieldnames or [])]
        unknown = [c for c in (reader.fieldnames or []) if c not in CSV_COLUMNS]
        if missing or unknown:
            raise VfxError(f"{path}: columns must be {', '.join(CSV_COLUMNS)} (input required); "
                           f"{'missing ' + missing[0] if missing else 'unknown ' + unknown[0]}")
        shots = []
        for line, row in enumerate(reader, start=2):
            source = (row.get("input") or "").strip()
            if not source:
                raise VfxError(f"{path}:{line}: input is empty")
            name = f"{line - 1:03d}_{Path(source).stem}"
            shots.append(Shot(
                name=name, input=str(_relative_to(path, source)),
                output=str(_relative_to(path, row["output"].strip())) if (row.get("output") or "").strip()
                else str(out_dir / f"{name}.mp4"),
                frames=(row.get("frames") or "").strip() or None,
                subject=[s.strip() for s in (row.get("subject") or "").split(";") if s.strip()],
                style=(row.get("style") or "").strip() or None))
    return shots


def _timeline_shots(path: Path, out_dir: Path, edl_rate: float) -> list[Shot]:
    import opentimelineio as otio

    options = {"rate": edl_rate} if path.suffix.lower() == ".edl" else {}
    try:
        timeline = otio.adapters.read_from_file(str(path), **options)
    except Exception as exc:  # OTIO raises many types for a malformed file; all mean the same to the user
        raise VfxError(f"{path}: not a readable timeline ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    shots = []
    for number, clip in enumerate(timeline.find_clips(), start=1):
        reference = clip.media_reference
        url = getattr(reference, "target_url", None)
        if not url:  # EDL events name their source by reel/clip name only
            url = clip.name
        source = _relative_to(path, url.removeprefix("file://"))
        ranged = clip.source_range or clip.trimmed_range()
        first = round(ranged.start_time.to_frames())
        last = first + round(ranged.duration.to_frames()) - 1
        meta = dict(clip.metadata.get("vfx", {}))
        name = f"{number:03d}_{_safe(clip.name or source.stem)}"
        subject = meta.get("subject") or []
        shots.append(Shot(name=name, input=str(source), output=str(out_dir / f"{name}.mp4"), frames=f"{first}-{last}",
                          subject=[subject] if isinstance(subject, str) else list(subject), style=meta.get("style")))
    return shots


def _relative_to(list_file: Path, text: str) -> Path:
    candidate = Path(text).expanduser()
    return candidate if candidate.is_absolute() else (list_file.parent / candidate)


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(text).stem)[:60] or "shot"


def shot_config(base: PipelineConfig, shot: Shot) -> PipelineConfig:
    return with_overrides(base, {"segment.subject": shot.subject or None, "restyle.style": shot.style})


# -- running -------------------------------------------------------------------------------------
def run_local(shot: Shot, config: PipelineConfig, quiet: bool) -> ShotReport:
    from vfx.cli_run import _run_with_progress
    from vfx.job import JobSpec

    result = _run_with_progress(JobSpec(shot.input, shot.output, config, frames=shot.frames), quiet)
    return ShotReport(shot.name, shot.input, shot.output, "done", result.frames, round(result.seconds, 2),
                      result.provenance)


def run_remote(shot: Shot, config: PipelineConfig, url: str, key: str, upload: bool) -> ShotReport:
    """Submit the shot to a vfx service, wait for it, download the output (and its provenance)."""
    import httpx

    headers = {"Authorization": f"Bearer {key}"}
    started = time.perf_counter()
    data = {"config": config.model_dump_json(), **({"frames": shot.frames} if shot.frames else {})}
    with httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=60) as client:
        if upload:
            with open(shot.input, "rb") as f:
                answer = client.post("/v1/jobs", data=data, files={"file": (Path(shot.input).name, f)})
        else:
            answer = client.post("/v1/jobs", data={**data, "path": str(Path(shot.input).resolve())})
        job = _json_or_error(answer, "submit")
        while job["state"] not in ("done", "failed", "cancelled"):
            time.sleep(POLL_S)
            job = _json_or_error(client.get(f"/v1/jobs/{job['id']}"), "status")
        if job["state"] != "done":
            raise VfxError(f"service job {job['id']} {job['state']}: {job.get('error') or 'no reason given'}")
        _download(client, f"/v1/jobs/{job['id']}/output", Path(shot.output))
        sidecar = Path(f"{shot.output}.provenance.json")
        manifest = client.get(f"/v1/jobs/{job['id']}/manifest")
        provenance = None
        if manifest.status_code == 200:
            write_durably(sidecar, manifest.content)
            provenance = str(sidecar)
    return ShotReport(shot.name, shot.input, shot.output, "done", int(job["frames"]["done"]),
                      round(time.perf_counter() - started, 2), provenance, job_id=job["id"])


def _json_or_error(answer, what: str) -> dict[str, Any]:
    if answer.status_code >= 400:
        try:
            detail = answer.json().get("detail")
        except ValueError:
            detail = answer.text[:200]
        raise VfxError(f"service refused the {what} ({answer.status_code}): {detail}")
    return answer.json()


def _download(client, route: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.part")
    try:
        with client.stream("GET", route) as answer:
            if answer.status_code != 200:
                raise VfxError(f"service refused the download ({answer.status_code})")
            with open(tmp, "wb") as out:
                for block in answer.iter_bytes(1 << 20):
                    out.write(block)
                out.flush()
                os.fsync(out.fileno())
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)


def run_batch(shots: list[Shot], base: PipelineConfig, runner: Callable[[Shot, PipelineConfig], ShotReport]) -> list[ShotReport]:
    reports = []
    for shot in shots:
        started = time.perf_counter()
        try:
            reports.append(runner(shot, shot_config(base, shot)))
        except VfxError as exc:
            reports.append(ShotReport(shot.name, shot.input, shot.output, "failed",
                                      seconds=round(time.perf_counter() - started, 2), error=str(exc)))
            typer.echo(f"vfx: shot {shot.name} failed: {exc}", err=True)
    return reports


def write_report(reports: list[ShotReport], path: Path) -> None:
    document = {"shots": [asdict(r) for r in reports],
                "done": sum(r.status == "done" for r in reports), "failed": sum(r.status == "failed" for r in reports),
                "frames": sum(r.frames for r in reports)}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_durably(path, json.dumps(document, indent=2).encode() + b"\n")


def batch(
    shots: str = typer.Argument(..., help="Shot list: .otio or .edl timeline (OpenTimelineIO), or .csv with columns input,frames,subject,style,output."),
    out_dir: str = typer.Option("shots-out", "--out-dir", help="Folder for outputs the list does not name, and the report."),
    config: Optional[str] = typer.Option(None, "--config", help="Pipeline YAML every shot starts from; a shot's subject and style override it."),
    style: Optional[str] = typer.Option(None, "--style", help="Look for shots that name none."),
    service: Optional[str] = typer.Option(None, "--service", help="Submit to this vfx service URL instead of running here (key from VFX_API_KEY)."),
    upload: bool = typer.Option(False, "--upload", help="With --service: upload each input instead of naming its path on shared storage."),
    report: Optional[str] = typer.Option(None, "--report", help="Report JSON (default OUT_DIR/report.json)."),
    edl_rate: float = typer.Option(24.0, "--edl-rate", min=1.0, help="Frame rate of an EDL's timecodes."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Run every shot of a shot list (locally or on a service) and write a report of each."""
    out = Path(out_dir)
    shot_list = read_shots(shots, out, edl_rate)
    out.mkdir(parents=True, exist_ok=True)
    base = with_overrides(load_pipeline_config(config), {"restyle.style": style})
    if service:
        key = os.environ.get("VFX_API_KEY")
        if not key:
            raise VfxError("--service needs an operator key in VFX_API_KEY (vfx serve-key NAME --role operator)")
        reports = run_batch(shot_list, base, lambda shot, cfg: run_remote(shot, cfg, service, key, upload))
    else:
        reports = run_batch(shot_list, base, lambda shot, cfg: run_local(shot, cfg, quiet))
    report_path = Path(report) if report else out / "report.json"
    write_report(reports, report_path)
    done = sum(r.status == "done" for r in reports)
    typer.echo(f"{done} of {len(reports)} shots done, {sum(r.frames for r in reports)} frames; report: {report_path}")
    if done < len(reports):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("batch")(batch)
