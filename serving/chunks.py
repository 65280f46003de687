"""Render-farm style shots: frame-range chunks with a leading overlap, then one final encode.

Chunk k writes frames [write_first, last] but decodes and processes from ``process_first``
(``overlap`` frames earlier), so matte smoothing and restyle stabilisation enter the chunk
warmed up, as they would in one long run. Chunks are intermediates (lossless RGB H.264 in MKV,
written atomically by FrameWriter); the final MP4 is encoded once from them, skipping each
chunk's overlap frames, with the source's audio for the range. A chunk file either exists
complete or not at all, so a resumed job redoes only chunks without one.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from serving.store import Chunk
from vfx.hashing import sha256_file
from vfx.config import PipelineConfig
from vfx.errors import VfxError
from vfx.frames import FrameBatch
from vfx.job import JobSpec, run_job
from vfx.provenance import write_provenance
from vfx.provenance.manifest import sidecar_path
from vfx.video import FrameRange, FrameReader, FrameWriter, MatteWriter, probe

INTERMEDIATE_CRF = 0  # lossless: the only generation loss is the final encode


def plan_chunks(job_id: str, first: int, last: int, config: PipelineConfig, chunk_frames: int, overlap: int) -> list[Chunk]:
    # A prompted subject is tracked through the whole shot first (serving/tracking.py); its chunks
    # replay the stored mattes, so they split like any other shot.
    chunks = []
    for index, start in enumerate(range(first, last + 1, chunk_frames)):
        end = min(last, start + chunk_frames - 1)
        chunks.append(Chunk(job_id=job_id, index=index, process_first=max(first, start - overlap),
                            write_first=start, last=end))
    return chunks


def chunk_path(job_dir: Path, index: int) -> Path:
    return job_dir / "chunks" / f"chunk-{index:05d}.mkv"


def chunk_matte_path(job_dir: Path, index: int) -> Path:
    return job_dir / "chunks" / f"matte-{index:05d}.mkv"


def chunk_is_complete(path: Path, expected_frames: int) -> bool:
    if not path.is_file():
        return False
    try:
        return probe(path).frame_count == expected_frames
    except VfxError:
        return False


def render_chunk(source: str, chunk: Chunk, config: PipelineConfig, job_dir: Path, want_matte: bool,
                 progress: Callable[[int], None], cancelled: Callable[[], bool],
                 concealed: list[int] | None = None, gate: Any = None) -> int:
    """Process the chunk's frames (overlap included) into its intermediate file(s); returns frames processed.
    ``concealed`` gets the written frames the reader had to conceal (damaged input).

    run_job signs the intermediate as it signs any output (steps, model hashes from the steps,
    grants and likeness edits from ``gate``); the assembled output's provenance is made from these."""
    out = chunk_path(job_dir, chunk.index)
    matte = chunk_matte_path(job_dir, chunk.index) if want_matte else None
    out.parent.mkdir(parents=True, exist_ok=True)
    intermediate = config.model_copy(update={"output": config.output.model_copy(
        update={"crf": INTERMEDIATE_CRF, "preset": "ultrafast", "keep_audio": False, "provenance": True,
                "lossless_rgb": True})})
    spec = JobSpec(input=source, output=str(out), config=intermediate,
                   frames=f"{chunk.process_first}-{chunk.last}", matte=str(matte) if matte else None)
    result = run_job(spec, progress=progress, cancelled=cancelled, gate=gate)
    if not chunk_is_complete(out, chunk.process_count):
        raise VfxError(f"chunk {chunk.index}: intermediate does not hold {chunk.process_count} frames")
    if concealed is not None:
        concealed.extend(f for f in result.bad_frames if f >= chunk.write_first)
    return result.frames


def _chunk_frames(path: Path, chunk: Chunk, batch_size: int) -> Iterator[FrameBatch]:
    """The chunk's written frames, renumbered to their frame numbers in the shot."""
    info = probe(path)
    skip = chunk.write_first - chunk.process_first
    reader = FrameReader(info, FrameRange(skip, info.frame_count - 1), strict=True)
    for batch in reader.batches(batch_size):
        batch.indices = batch.indices - skip + chunk.write_first
        yield batch


def assemble(source: str, chunks: list[Chunk], config: PipelineConfig, job_dir: Path, output: Path,
             matte_output: Path | None, batch_size: int = 8) -> int:
    """Encode the final MP4 (and matte) from the chunks in order; FrameWriter refuses a wrong frame count."""
    info = probe(source)
    shot = FrameRange(chunks[0].write_first, chunks[-1].last)
    writer = FrameWriter(str(output), info, shot, keep_audio=config.output.keep_audio, crf=config.output.crf,
                         preset=config.output.preset)
    mattes = MatteWriter(str(matte_output), info, shot) if matte_output else None
    try:
        expected = shot.first
        for chunk in chunks:
            for batch in _chunk_frames(chunk_path(job_dir, chunk.index), chunk, batch_size):
                if int(batch.indices[0]) != expected:
                    raise VfxError(f"chunk {chunk.index}: frame {int(batch.indices[0])} where {expected} belongs")
                writer.write(batch)
                expected = int(batch.indices[-1]) + 1
            if mattes is not None:
                for batch in _chunk_frames(chunk_matte_path(job_dir, chunk.index), chunk, batch_size):
                    batch.matte = batch.frames[..., 0].astype(np.float32) / 255.0
                    mattes.write(batch)
        writer.close()
        if mattes is not None:
            mattes.close()
    except BaseException:
        writer.abort()
        if mattes is not None:
            mattes.abort()
        raise
    if config.output.provenance:
        _sign_output(source, output, shot, chunks, job_dir)
    return len(shot)


def _sign_output(source: str, output: Path, shot: FrameRange, chunks: list[Chunk], job_dir: Path) -> None:
    """The assembled output gets the same signed sidecar and C2PA manifest as a `vfx run` output,
    made from the chunks' own provenance (written by run_job): their steps and backends, every
    model hash, every grant and likeness edit, the newest ledger head."""
    records = [chunk_provenance(job_dir, chunk.index) for chunk in chunks]
    steps = [{**step, "frames": [shot.first, shot.last], "chunks": len(chunks)} if step.get("name") == "decode" else step
             for step in records[0]["steps"]]
    model_hashes = {k: v for record in records for k, v in record["model_hashes"].items()}
    grant_ids = sorted({g for record in records for g in record["grant_ids"]})
    consent = [edit for record in records for edit in record.get("consent", [])]
    ledger_head = next((r["ledger_head"] for r in reversed(records) if r.get("ledger_head")), None)
    inputs = [source] + [i["path"] for i in records[0]["inputs"][1:]]
    write_provenance(output, inputs, steps, records[0]["backends"], model_hashes, grant_ids, ledger_head,
                     consent=consent)


def chunk_provenance(job_dir: Path, index: int) -> dict[str, Any]:
    """The signed record run_job wrote next to a chunk's intermediate."""
    path = sidecar_path(chunk_path(job_dir, index))
    try:
        return json.loads(path.read_text())["manifest"]
    except (OSError, ValueError, KeyError) as exc:
        raise VfxError(f"chunk {index}: no readable provenance record ({exc})") from None


def write_manifest(path: Path, job: dict, chunks: list[Chunk], output: Path, matte: Path | None) -> None:
    """A job manifest: what went in, with which settings, in which chunks, and what came out (hashes)."""
    manifest = {
        "job": job["id"], "input_sha256": job["input_sha256"], "frames": [job["first_frame"], job["last_frame"]],
        "config": json.loads(job["config_json"]),
        "chunks": [{"index": c.index, "process_first": c.process_first, "write_first": c.write_first,
                    "last": c.last, "attempts": c.attempts} for c in chunks],
        "output": {"file": output.name, "sha256": sha256_file(output), "frames": probe(output).frame_count},
        "matte": {"file": matte.name, "sha256": sha256_file(matte)} if matte else None,
        "grant_ids": sorted({g for c in chunks for g in chunk_provenance(Path(job["job_dir"]), c.index)["grant_ids"]}),
        "finished_at": time.time(),
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=2))
    tmp.replace(path)
