"""Bring a job's files into its own folder: the shot (uploaded or named), a style picture, dub audio.

Every input becomes a private copy in the job's folder, hashed in full while it is copied, and is
probed in the sandbox (serving.untrusted) before anything else opens it. A file named by path is
copied rather than trusted, so swapping it after the probe changes nothing the job reads. Copies
and probes run in worker threads: the gateway's event loop keeps answering while they work.
"""
from __future__ import annotations

import asyncio
import hashlib
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from fastapi import UploadFile

from serving.jobspec import side_inputs, under_roots
from serving.retention import INCOMING_PREFIX, INPUT_PREFIX
from serving.settings import ServeSettings
from serving.untrusted import ProbeReport, Refused, probe_untrusted
from vfx.config import PipelineConfig

BLOCK = 1 << 20
PROBE_KIND = {"style_image": "image", "lipsync": "audio"}


@dataclass(frozen=True)
class Staged:
    path: Path
    sha256: str
    size: int


def new_job_dir(settings: ServeSettings) -> Path:
    directory = settings.state_path / "jobs" / uuid.uuid4().hex
    directory.mkdir(parents=True)
    return directory


def _suffix(name: str | None) -> str:
    suffix = Path(name or "").suffix.lower()[:8]
    return suffix if suffix[1:].isalnum() else ""


async def receive_upload(file: UploadFile, job_dir: Path, max_bytes: int) -> Staged:
    """Copy the (already spooled) upload into the job folder, hashing it; Refused(413) past ``max_bytes``."""
    if file.size is not None and file.size > max_bytes:
        raise Refused(413, f"upload is {file.size} bytes; the limit is {max_bytes}")
    staging = job_dir / f"{INCOMING_PREFIX}{uuid.uuid4().hex}"
    digest, size = hashlib.sha256(), 0
    with open(staging, "wb") as out:
        while block := await file.read(BLOCK):
            size += len(block)
            if size > max_bytes:
                raise Refused(413, f"upload is larger than the limit of {max_bytes} bytes")
            digest.update(block)
            await asyncio.to_thread(out.write, block)
    final = job_dir / f"{INPUT_PREFIX}{_suffix(file.filename)}"
    staging.replace(final)
    return Staged(final, digest.hexdigest(), size)


def incoming_size(file: UploadFile | None, path: str | None, settings: ServeSettings) -> int:
    """Bytes a submission will add (refuses a named path outside the input roots before anything else)."""
    if file is not None:
        return file.size or 0
    return under_roots(path, settings.input_roots, "path").stat().st_size


def copy_named(path: str, roots: list[str], target: Path, what: str = "path") -> Staged:
    """Copy a file under the input roots to ``target``, hashing every byte (blocking: call in a thread)."""
    source = under_roots(path, roots, what)
    digest, size = hashlib.sha256(), 0
    staging = target.with_name(f"{INCOMING_PREFIX}{uuid.uuid4().hex}")
    with open(source, "rb") as src, open(staging, "wb") as out:
        while block := src.read(BLOCK):
            size += len(block)
            digest.update(block)
            out.write(block)
    staging.replace(target.with_suffix(_suffix(source.name)))
    return Staged(target.with_suffix(_suffix(source.name)), digest.hexdigest(), size)


async def stage_shot(file: UploadFile | None, path: str | None, job_dir: Path, settings: ServeSettings) -> tuple[Staged, ProbeReport]:
    if file is not None:
        staged = await receive_upload(file, job_dir, settings.limits.max_bytes)
    else:
        staged = await asyncio.to_thread(copy_named, path, settings.input_roots, job_dir / INPUT_PREFIX)
    report = await asyncio.to_thread(probe_untrusted, staged.path, settings.limits, "video")
    return staged, report


async def stage_side_inputs(config: PipelineConfig, job_dir: Path, settings: ServeSettings) -> tuple[PipelineConfig, dict[str, str]]:
    """Copy and probe the style picture and dub audio a config names; the config then names the copies.
    Returns the new config and each side input's sha256."""
    replaced: dict[str, str] = {}
    hashes: dict[str, str] = {}
    for what, path in side_inputs(config).items():
        staged = await asyncio.to_thread(copy_named, path, settings.input_roots, job_dir / what, what)
        try:
            await asyncio.to_thread(probe_untrusted, staged.path, settings.limits, PROBE_KIND[what])
        except Refused as refused:
            raise Refused(refused.status, f"{what}: {refused.reason}") from None
        replaced[what], hashes[what] = str(staged.path), staged.sha256
    if not replaced:
        return config, hashes
    data = config.model_dump()
    if "style_image" in replaced:
        data["restyle"]["style_image"] = replaced["style_image"]
    if "lipsync" in replaced:
        data["face"]["lipsync"] = replaced["lipsync"]
    return PipelineConfig.model_validate(data), hashes


def discard(job_dir: Path) -> None:
    shutil.rmtree(job_dir, ignore_errors=True)
