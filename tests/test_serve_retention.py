"""Retention, leases and done-mark checks on a real SQLite job store and real files (no Ray needed)."""
from __future__ import annotations

import os
import time
from pathlib import Path

import av
import numpy as np
import pytest

from serving.durable import decodes_to
from serving.retention import sweep
from serving.settings import load_settings
from serving.store import Chunk, JobStore


@pytest.fixture
def served(tmp_path):
    settings = load_settings({"state_dir": str(tmp_path), "retention": {"job_ttl_hours": 1, "leftover_age_s": 600}})
    (tmp_path / "jobs").mkdir()
    return settings, JobStore(settings.db_url)


def make_job(store: JobStore, settings, state: str, finished_ago_s: float | None) -> tuple[dict, Path]:
    job_dir = settings.state_path / "jobs" / os.urandom(8).hex()
    (job_dir / "chunks").mkdir(parents=True)
    (job_dir / "output.mp4").write_bytes(b"o" * 1000)
    (job_dir / "chunks" / "chunk-00000.mkv").write_bytes(b"c" * 1000)
    job, _ = store.create_job({"owner": "op", "idempotency_key": None, "request_digest": "d", "input_path": "x",
                               "input_sha256": "s", "uploaded": True, "config_json": "{}", "first_frame": 0,
                               "last_frame": 9, "want_matte": False, "job_dir": str(job_dir)})
    if finished_ago_s is not None:
        store.set_state(job["id"], state, finished_at=time.time() - finished_ago_s)
    return job, job_dir


def test_sweep_deletes_expired_jobs_intermediates_and_crash_leftovers_only(served):
    settings, store = served
    expired, expired_dir = make_job(store, settings, "done", 2 * 3600)
    recent, recent_dir = make_job(store, settings, "done", 60)
    running, running_dir = make_job(store, settings, "running", None)
    orphan = settings.state_path / "jobs" / "no-record"
    orphan.mkdir()
    (orphan / ".incoming-123").write_bytes(b"x" * 100)
    young_orphan = settings.state_path / "jobs" / "being-submitted"
    young_orphan.mkdir()
    old = time.time() - 3600
    os.utime(orphan / ".incoming-123", (old, old))
    os.utime(orphan, (old, old))

    counts = sweep(store, settings)

    assert counts == {"expired": 1, "intermediates": 1, "orphans": 1, "incoming": 0}
    assert not expired_dir.exists() and store.job(expired["id"])["files_deleted_at"] is not None
    assert (recent_dir / "output.mp4").exists() and not (recent_dir / "chunks").exists()
    assert (running_dir / "chunks" / "chunk-00000.mkv").exists()  # a running job keeps its chunks
    assert not orphan.exists() and young_orphan.exists()  # a submission in progress is not a leftover yet
    assert sweep(store, settings) == {"expired": 0, "intermediates": 0, "orphans": 0, "incoming": 0}


def test_a_chunk_lease_is_held_by_one_worker_until_it_expires(served):
    _, store = served
    store.ensure_chunks("job", [Chunk(job_id="job", index=0, process_first=0, write_first=0, last=9)])
    assert store.take_lease("job", 0, "worker-a", lease_s=60) == 1
    assert store.take_lease("job", 0, "worker-b", lease_s=60) is None  # a second render is refused
    assert store.chunk("job", 0).leased(time.time())
    store.renew_lease("job", 0, "worker-a", lease_s=-1)  # worker-a stops renewing (it died)
    assert not store.chunk("job", 0).leased(time.time())
    assert store.take_lease("job", 0, "worker-b", lease_s=60) == 2
    assert not store.finish_chunk("job", 0, "worker-a", 10)  # the late first render is not kept
    assert store.finish_chunk("job", 0, "worker-b", 10)
    done = store.chunk("job", 0)
    assert (done.state, done.renders, done.lease_holder) == ("done", 1, None)
    assert store.take_lease("job", 0, "worker-c", lease_s=60) is None  # done is done


def test_a_done_mark_is_trusted_only_when_the_file_decodes_to_its_frames(tmp_path):
    path = tmp_path / "chunk.mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10, options={"crf": "0", "preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(12):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 20, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    assert decodes_to(path, 12)
    assert not decodes_to(path, 13)
    short = tmp_path / "short.mkv"
    short.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert not decodes_to(short, 12)
    assert not decodes_to(tmp_path / "missing.mkv", 12)
