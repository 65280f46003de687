"""Shot jobs: a JobManager that plans, dispatches, retries and resumes; ChunkWorkers that render.

All job state lives in the JobStore, so any replica can die: a new JobManager finds active
jobs there and carries on; a chunk whose worker died is sent again (bounded attempts); a
chunk with a complete intermediate file is never rendered twice.
"""
from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from ray.exceptions import RayError

from serving.chunks import (assemble, chunk_is_complete, chunk_path, plan_chunks, render_chunk, write_manifest)
from serving.gates import gate_for
from serving.logs import job_logger
from serving.settings import load_settings
from serving.store import Chunk, JobStore
from vfx.config import PipelineConfig
from vfx.errors import VfxError

PROGRESS_EVERY_S = 0.5


def job_outputs(job: dict[str, Any]) -> tuple[Path, Path | None, Path]:
    directory = Path(job["job_dir"])
    return directory / "output.mp4", (directory / "matte.mp4") if job["want_matte"] else None, directory / "manifest.json"


class ChunkWorker:
    """Renders one chunk (or assembles a finished job) per call; ``max_ongoing_requests`` 1."""

    def __init__(self, settings: dict[str, Any]):
        self.settings = load_settings(settings)
        self.store = JobStore(self.settings.db_url)

    async def render(self, job_id: str, index: int) -> int:
        return await asyncio.to_thread(self._render, job_id, index)

    async def assemble(self, job_id: str) -> int:
        return await asyncio.to_thread(self._assemble, job_id)

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
        if chunk.state == "done" and chunk_is_complete(chunk_path(Path(job["job_dir"]), index), chunk.process_count):
            return 0
        attempt = self.store.start_attempt(job_id, index)
        log.info("chunk %d attempt %d: frames %d-%d (writes from %d)", index, attempt, chunk.process_first,
                 chunk.last, chunk.write_first, extra={"chunk": index})
        config = PipelineConfig.model_validate_json(job["config_json"])
        done = [0, 0.0, 0.0]  # frames, last progress write, last cancel check

        def progress(frames: int) -> None:
            done[0] += frames
            if time.monotonic() - done[1] >= PROGRESS_EVERY_S:
                done[1] = time.monotonic()
                self.store.update_chunk(job_id, index, frames_done=done[0])

        def cancelled() -> bool:
            if time.monotonic() - done[2] < PROGRESS_EVERY_S:
                return False
            done[2] = time.monotonic()
            return self.store.state_of(job_id) == "cancelled"

        started = time.monotonic()
        gate = gate_for(config, self.settings.consent_db)  # face edits: the server's store, the job's project
        frames = render_chunk(job["input_path"], chunk, config, Path(job["job_dir"]), job["want_matte"],
                              progress, cancelled, gate)
        self.store.update_chunk(job_id, index, state="done", frames_done=frames, error=None)
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
        return frames


class JobManager:
    """Starts queued jobs and resumes interrupted ones; one replica is enough (it only waits)."""

    def __init__(self, settings: dict[str, Any], workers: Any):
        self.settings = load_settings(settings)
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
        self.running = {k: t for k, t in self.running.items() if not t.done()}
        adopted = 0
        for job_id in self.store.active_job_ids():
            if job_id not in self.running:
                self.running[job_id] = asyncio.get_running_loop().create_task(self._run_job(job_id))
                adopted += 1
        return adopted

    async def _poll_forever(self) -> None:
        while True:
            try:
                self._adopt_jobs()
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
            self.store.set_state(job_id, "running", started_at=time.time())
            log.info("job started: frames %d-%d", job["first_frame"], job["last_frame"])
        else:
            log.info("job resumed in state %s", job["state"])
        config = PipelineConfig.model_validate_json(job["config_json"])
        jobs = self.settings.jobs
        chunks = self.store.ensure_chunks(job_id, plan_chunks(job_id, job["first_frame"], job["last_frame"], config,
                                                              jobs.chunk_frames, jobs.overlap_frames))
        limit = asyncio.Semaphore(jobs.max_parallel_chunks)
        await asyncio.gather(*(self._render_with_retries(chunk, limit, log) for chunk in chunks))
        if self.store.state_of(job_id) == "cancelled":
            log.info("job cancelled")
            return
        if not self.store.set_state(job_id, "assembling"):
            return
        frames = await self._with_retries(lambda: self.workers.assemble.remote(job_id), "assembly", log)
        if self.store.set_state(job_id, "done", finished_at=time.time()):
            log.info("job done: %d frames", frames)

    async def _render_with_retries(self, chunk: Chunk, limit: asyncio.Semaphore, log: logging.LoggerAdapter) -> None:
        async with limit:
            current = self.store.chunk(chunk.job_id, chunk.index)
            if current.state == "done" or self.store.state_of(chunk.job_id) != "running":
                return
            await self._with_retries(lambda: self.workers.render.remote(chunk.job_id, chunk.index),
                                     f"chunk {chunk.index}", log, chunk)

    async def _with_retries(self, call, what: str, log: logging.LoggerAdapter, chunk: Chunk | None = None) -> Any:
        """Retry when a worker dies or fails for a transient reason; input errors (VfxError) fail at once."""
        attempts = self.settings.jobs.max_attempts
        for attempt in range(1, attempts + 1):
            if chunk is not None:
                recorded = self.store.chunk(chunk.job_id, chunk.index).attempts
                if recorded >= attempts:
                    raise VfxError(f"{what} failed {recorded} times; giving up")
            try:
                return await call()
            except Exception as exc:
                cause = _root_cause(exc)
                if isinstance(cause, VfxError):
                    raise cause from None
                if isinstance(cause, InterruptedError):
                    return 0
                log.warning("%s attempt %d failed (%s: %s); retrying", what, attempt, type(exc).__name__,
                            str(cause).splitlines()[0] if str(cause) else "", exc_info=exc,
                            extra={"chunk": chunk.index} if chunk is not None else {})
                if chunk is not None:
                    self.store.update_chunk(chunk.job_id, chunk.index, state="pending",
                                            error=f"{type(cause).__name__}: {str(cause)[:300]}")
                await asyncio.sleep(min(5.0, 0.5 * 2 ** attempt))
        raise VfxError(f"{what} failed {attempts} times; giving up")


def _root_cause(exc: BaseException) -> BaseException:
    """A RayTaskError wraps the user exception; unwrap it to tell input errors from crashes."""
    if isinstance(exc, RayError) and hasattr(exc, "cause") and isinstance(getattr(exc, "cause"), BaseException):
        return exc.cause
    return exc
