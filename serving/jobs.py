"""Shot jobs: a JobManager that plans, dispatches, retries and resumes; ChunkWorkers that render.

All job state lives in the JobStore, so any replica can die: a new JobManager finds active
jobs there and carries on; a chunk whose worker died is sent again (bounded attempts); a
chunk with a complete intermediate file is never rendered twice.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any

from ray.exceptions import RayError

from serving.chunks import assemble, chunk_matte_path, chunk_path, plan_chunks, render_chunk, write_manifest
from serving.cluster import alive_nodes, check_nodes, record_chunk_node, refuse_shared_sqlite
from serving.durable import decodes_to, make_durable, write_durably
from serving.retention import drop_intermediates, sweep
from serving.gates import gate_for
from serving.logs import job_logger
from serving.priority import render_in_background
from serving.settings import load_settings
from serving.store import Chunk, JobStore
from serving.tracking import mattes_dir, needs_tracking, render_config, track_shot
from vfx.config import PipelineConfig
from vfx.errors import VfxError
from vfx.segment.stored import MatteStore

PROGRESS_EVERY_S = 0.5
TRACKING_POLL_S = 0.5


def job_outputs(job: dict[str, Any]) -> tuple[Path, Path | None, Path]:
    directory = Path(job["job_dir"])
    return directory / "output.mp4", (directory / "matte.mp4") if job["want_matte"] else None, directory / "manifest.json"


class ChunkWorker:
    """Renders one chunk (or assembles a finished job) per call; ``max_ongoing_requests`` 1."""

    def __init__(self, settings: dict[str, Any]):
        self.settings = load_settings(settings)
        render_in_background(self.settings.render_nice)
        refuse_shared_sqlite(self.settings.db_url, len(alive_nodes()))  # also on a node that joined later
        self.store = JobStore(self.settings.db_url)

    async def render(self, job_id: str, index: int) -> int:
        return await asyncio.to_thread(self._render, job_id, index)

    async def assemble(self, job_id: str) -> int:
        return await asyncio.to_thread(self._assemble, job_id)

    async def track(self, job_id: str) -> int:
        return await asyncio.to_thread(self._track, job_id)

    def _track(self, job_id: str) -> int:
        try:
            return self._track_shot(job_id)
        except InterruptedError:
            raise
        except BaseException:
            job_logger(job_id).exception("tracking pass failed")
            raise

    def _track_shot(self, job_id: str) -> int:
        """Phase one of a prompted job: track the whole shot in order into its stored mattes."""
        job = self.store.job(job_id)
        if job is None:
            raise VfxError(f"job {job_id}: no such record")
        log = job_logger(job_id)
        config = PipelineConfig.model_validate_json(job["config_json"])
        checked = [0.0]

        def cancelled() -> bool:
            if time.monotonic() - checked[0] < PROGRESS_EVERY_S:
                return False
            checked[0] = time.monotonic()
            return self.store.state_of(job_id) == "cancelled"

        started = time.monotonic()
        log.info("tracking pass: frames %d-%d", job["first_frame"], job["last_frame"])
        frames = track_shot(job["input_path"], config, Path(job["job_dir"]), job["first_frame"], job["last_frame"],
                            lambda n: None, cancelled)
        log.info("tracking pass done: %d frames tracked in %.1f s", frames, time.monotonic() - started)
        return frames

    def _render(self, job_id: str, index: int) -> int:
        try:
            return self._render_chunk(job_id, index)
        except InterruptedError:
            raise
        except BaseException:
            job_logger(job_id).exception("chunk %d failed", index, extra={"chunk": index})
            raise

    def _render_chunk(self, job_id: str, index: int) -> int:
        job = self.store.job(job_id)
        chunk = self.store.chunk(job_id, index)
        if job is None or chunk is None:
            raise VfxError(f"job {job_id} chunk {index}: no such record")
        log = job_logger(job_id)
        if chunk.state == "done" and chunk_files_hold(job, chunk):
            return 0
        jobs = self.settings.jobs
        holder = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        attempt = self.store.take_lease(job_id, index, holder, jobs.lease_s)
        if attempt is None:
            raise LeaseHeld(f"chunk {index} is being rendered by another worker")
        log.info("chunk %d attempt %d: frames %d-%d (writes from %d)", index, attempt, chunk.process_first,
                 chunk.last, chunk.write_first, extra={"chunk": index})
        config = render_config(PipelineConfig.model_validate_json(job["config_json"]), Path(job["job_dir"]))
        started = time.monotonic()
        done = [0, 0.0, 0.0]  # frames, last progress write, last cancel check

        def progress(frames: int) -> None:
            done[0] += frames
            if time.monotonic() - done[1] >= PROGRESS_EVERY_S:
                done[1] = time.monotonic()
                self.store.renew_lease(job_id, index, holder, jobs.lease_s, frames_done=done[0])

        def cancelled() -> bool:
            if time.monotonic() - started > jobs.chunk_timeout_s:
                return True
            if time.monotonic() - done[2] < PROGRESS_EVERY_S:
                return False
            done[2] = time.monotonic()
            self.store.renew_lease(job_id, index, holder, jobs.lease_s)
            return self.store.state_of(job_id) == "cancelled"

        concealed: list[int] = []
        gate = gate_for(config, self.settings.consent_db)  # face edits: the server's store, the job's project
        try:
            frames = render_chunk(job["input_path"], chunk, config, Path(job["job_dir"]), job["want_matte"],
                                  progress, cancelled, concealed, gate)
            make_durable(*chunk_files(job, chunk))
        except InterruptedError:
            timed_out = time.monotonic() - started > jobs.chunk_timeout_s
            self.store.release_lease(job_id, index, holder, "timed out" if timed_out else "cancelled")
            if timed_out:
                raise TimeoutError(f"chunk {index} took longer than {jobs.chunk_timeout_s:g} s") from None
            raise
        except BaseException as exc:
            self.store.release_lease(job_id, index, holder, f"{type(exc).__name__}: {str(exc)[:300]}")
            raise
        if concealed:
            log.warning("chunk %d: %d damaged frames concealed: %s", index, len(concealed), concealed[:20],
                        extra={"chunk": index})
        if not self.store.finish_chunk(job_id, index, holder, frames, json.dumps(concealed)):
            log.warning("chunk %d: lease lost while rendering; the other render's result stands", index)
            return 0
        record_chunk_node(Path(job["job_dir"]), index, attempt)
        log.info("chunk %d done: %d frames in %.1f s", index, frames, time.monotonic() - started, extra={"chunk": index})
        return frames

    def _assemble(self, job_id: str) -> int:
        try:
            return self._assemble_job(job_id)
        except BaseException:
            job_logger(job_id).exception("assembly failed")
            raise

    def _assemble_job(self, job_id: str) -> int:
        job = self.store.job(job_id)
        chunks = self.store.chunks(job_id)
        output, matte, manifest = job_outputs(job)
        config = PipelineConfig.model_validate_json(job["config_json"])
        frames = assemble(job["input_path"], chunks, config, Path(job["job_dir"]), output, matte)
        write_manifest(manifest, job, chunks, output, matte)
        concealed = sorted(f for c in chunks for f in json.loads(c.concealed or "[]"))
        report = {"packets": job["concealed_packets"] or 0, "frames": concealed}
        write_durably(manifest, json.dumps({**json.loads(manifest.read_text()), "concealed": report}, indent=2).encode())
        self.store.update_job(job_id, concealed_frames=json.dumps(concealed))
        make_durable(*(p for p in (output, matte, manifest) if p is not None))
        return frames


class LeaseHeld(Exception):
    """Another worker holds a live lease on the chunk; the manager waits for it instead of retrying."""


def chunk_files(job: dict[str, Any], chunk: Chunk) -> list[Path]:
    directory = Path(job["job_dir"])
    return [chunk_path(directory, chunk.index)] + ([chunk_matte_path(directory, chunk.index)] if job["want_matte"] else [])


def chunk_files_hold(job: dict[str, Any], chunk: Chunk) -> bool:
    """A done mark is trusted only when every file of the chunk decodes to the frames it must hold."""
    return all(decodes_to(path, chunk.process_count) for path in chunk_files(job, chunk))


class JobManager:
    """Starts queued jobs and resumes interrupted ones; one replica is enough (it only waits)."""

    def __init__(self, settings: dict[str, Any], workers: Any):
        self.settings = load_settings(settings)
        self.nodes = check_nodes(self.settings)  # shared storage and job records, before any job is adopted
        self.store = JobStore(self.settings.db_url)
        self.workers = workers
        self.running: dict[str, asyncio.Task] = {}
        self.log = logging.getLogger("vfx.serving.jobs")
        self.poller = asyncio.get_running_loop().create_task(self._poll_forever())

    async def kick(self) -> int:
        """Pick up new or orphaned jobs now instead of at the next poll."""
        return self._adopt_jobs()

    async def check_health(self) -> None:
        if self.poller.done():
            raise RuntimeError("job poller stopped")

    def _adopt_jobs(self) -> int:
        """Resume every started job; start queued ones while fewer than max_running_jobs run."""
        self.running = {k: t for k, t in self.running.items() if not t.done()}
        slots = self.settings.jobs.max_running_jobs - len(self.running)
        adopted = 0
        for job_id, state in self.store.active_jobs():
            if job_id in self.running:
                continue
            if state == "queued":
                if slots <= 0:
                    continue
                slots -= 1
            self.running[job_id] = asyncio.get_running_loop().create_task(self._run_job(job_id))
            adopted += 1
        return adopted

    async def _poll_forever(self) -> None:
        swept = 0.0
        while True:
            try:
                self._adopt_jobs()
                if time.monotonic() - swept >= self.settings.retention.sweep_every_s:
                    swept = time.monotonic()
                    await asyncio.to_thread(sweep, self.store, self.settings)
            except Exception:  # a locked or briefly unavailable database must not stop the poller
                self.log.exception("job poll failed")
            await asyncio.sleep(self.settings.jobs.poll_s)

    async def _run_job(self, job_id: str) -> None:
        log = job_logger(job_id)
        try:
            await self._drive(job_id, log)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            log.error("job failed: %s", reason, exc_info=True)
            self.store.set_state(job_id, "failed", error=reason, finished_at=time.time())

    async def _drive(self, job_id: str, log: logging.LoggerAdapter) -> None:
        job = self.store.job(job_id)
        if job["state"] == "queued":
            self.store.set_state(job_id, "running", only_from=("queued",), started_at=time.time())
            log.info("job started: frames %d-%d", job["first_frame"], job["last_frame"])
        else:
            log.info("job resumed in state %s", job["state"])
        config = PipelineConfig.model_validate_json(job["config_json"])
        jobs = self.settings.jobs
        chunks = self.store.ensure_chunks(job_id, plan_chunks(job_id, job["first_frame"], job["last_frame"], config,
                                                              jobs.chunk_frames, jobs.overlap_frames))
        if job["state"] != "queued":
            await self._distrust_broken_chunks(job, chunks, log)
        limit = asyncio.Semaphore(jobs.max_parallel_chunks)
        if needs_tracking(config) and any(c.state != "done" for c in chunks):
            # Phase one runs on one worker; each chunk renders as soon as the mattes of its frames are stored.
            tracking = asyncio.ensure_future(
                self._with_retries(lambda: self.workers.track.remote(job_id), "tracking pass", log))
            mattes = MatteStore(mattes_dir(Path(job["job_dir"])))
            await asyncio.gather(tracking, *(self._render_when_tracked(chunk, mattes, tracking, limit, log)
                                             for chunk in chunks))
        else:
            await asyncio.gather(*(self._render_with_retries(chunk, limit, log) for chunk in chunks))
        if self.store.state_of(job_id) == "cancelled":
            log.info("job cancelled")
            await asyncio.to_thread(drop_intermediates, job)
            return
        if not self.store.set_state(job_id, "assembling"):
            return
        frames = await self._with_retries(lambda: self.workers.assemble.remote(job_id), "assembly", log)
        if self.store.set_state(job_id, "done", finished_at=time.time()):
            log.info("job done: %d frames", frames)
            await asyncio.to_thread(drop_intermediates, job)

    async def _distrust_broken_chunks(self, job: dict[str, Any], chunks: list[Chunk], log: logging.LoggerAdapter) -> None:
        """After a restart: a chunk marked done whose file is missing or short is rendered again."""
        for chunk in chunks:
            if chunk.state == "done" and not await asyncio.to_thread(chunk_files_hold, job, chunk):
                log.warning("chunk %d was marked done but its file does not hold %d frames; rendering it again",
                            chunk.index, chunk.process_count)
                self.store.update_chunk(chunk.job_id, chunk.index, state="pending", error="file missing or short")

    async def _lease_released(self, chunk: Chunk) -> Chunk:
        """Wait while another worker holds a live lease on the chunk (it renews it as it renders)."""
        while True:
            current = self.store.chunk(chunk.job_id, chunk.index)
            if not current.leased(time.time()):
                return current
            await asyncio.sleep(min(1.0, self.settings.jobs.lease_s / 4))

    async def _render_when_tracked(self, chunk: Chunk, mattes: MatteStore, tracking: asyncio.Future,
                                   limit: asyncio.Semaphore, log: logging.LoggerAdapter) -> None:
        """The tracking pass stores mattes in frame order, so the chunk's last frame stored means all of them."""
        while not mattes.has(chunk.last) and mattes.completed() is None:
            if tracking.done() or self.store.state_of(chunk.job_id) != "running":
                return  # the tracking pass failed (gather reports it) or the job was cancelled
            await asyncio.sleep(TRACKING_POLL_S)
        await self._render_with_retries(chunk, limit, log)

    async def _render_with_retries(self, chunk: Chunk, limit: asyncio.Semaphore, log: logging.LoggerAdapter) -> None:
        async with limit:
            current = await self._lease_released(chunk)
            if current.state == "done" or self.store.state_of(chunk.job_id) != "running":
                return
            await self._with_retries(lambda: self.workers.render.remote(chunk.job_id, chunk.index),
                                     f"chunk {chunk.index}", log, chunk)

    async def _with_retries(self, call, what: str, log: logging.LoggerAdapter, chunk: Chunk | None = None) -> Any:
        """Retry when a worker dies, times out or fails for a transient reason; input errors (VfxError) fail at once.
        A chunk another worker holds (LeaseHeld) is waited for, not retried: no attempt is spent on it."""
        attempts = self.settings.jobs.max_attempts
        attempt = 0
        while attempt < attempts:
            if chunk is not None:
                current = await self._lease_released(chunk)
                if current.state == "done":
                    return 0
                if current.attempts >= attempts:
                    raise VfxError(f"{what} failed {current.attempts} times; giving up")
            attempt += 1
            try:
                return await asyncio.wait_for(_awaited(call()), self.settings.jobs.chunk_timeout_s)
            except Exception as exc:
                cause = _root_cause(exc)
                if isinstance(cause, VfxError):
                    raise cause from None
                if isinstance(cause, InterruptedError):
                    return 0
                if isinstance(cause, LeaseHeld):
                    attempt -= 1
                    await asyncio.sleep(0.5)
                    continue
                if isinstance(exc, asyncio.TimeoutError):
                    cause = TimeoutError(f"no answer within chunk_timeout_s={self.settings.jobs.chunk_timeout_s:g}")
                log.warning("%s attempt %d failed (%s: %s); retrying", what, attempt, type(cause).__name__,
                            str(cause).splitlines()[0] if str(cause) else "", exc_info=exc,
                            extra={"chunk": chunk.index} if chunk is not None else {})
                if chunk is not None:
                    self.store.update_chunk(chunk.job_id, chunk.index, error=f"{type(cause).__name__}: {str(cause)[:300]}")
                await asyncio.sleep(min(5.0, 0.5 * 2 ** attempt))
        raise VfxError(f"{what} failed {attempts} times; giving up")


async def _awaited(response: Any) -> Any:
    return await response


def _root_cause(exc: BaseException) -> BaseException:
    """A RayTaskError wraps the user exception; unwrap it to tell input errors from crashes."""
    if isinstance(exc, RayError) and hasattr(exc, "cause") and isinstance(getattr(exc, "cause"), BaseException):
        return exc.cause
    return exc
