"""Two-phase prompted shot jobs: a tracking pass stores every matte, then parallel chunks replay them.

The output must be frame-identical to `vfx run` (run_job) with the same settings, also when the
tracking pass dies part-way and resumes from its checkpoint.
"""
from __future__ import annotations

import time
from pathlib import Path

import av
import numpy as np
import pytest

from serve_helpers import SAMPLES, start_app, stop_app, submit, wait_job
from serving.tracking import mattes_dir, track_shot
from vfx.config import PipelineConfig
from vfx.job import JobSpec, run_job
from vfx.segment.stored import MatteStore

VTEST = SAMPLES / "vtest.avi"
# the man in jeans left of the lamp post on frame 110 of vtest.avi; tracked back to 100 and on to the end
WALKER = {"segment": {"subject": ["box:366,172,44,88@110"]}}


def decoded(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def test_a_tracking_pass_that_dies_resumes_at_its_checkpoint_with_the_same_mattes(tmp_path):
    config = PipelineConfig.model_validate({**WALKER, "batch_size": 4})
    whole = tmp_path / "whole"
    assert track_shot(str(VTEST), config, whole, 100, 129, lambda n: None, lambda: False) == 30

    crashed = tmp_path / "crashed"
    tracked = [0]

    def dies_after_16(frames: int) -> None:
        tracked[0] += frames
        if tracked[0] >= 16:
            raise RuntimeError("worker lost")

    with pytest.raises(RuntimeError):
        track_shot(str(VTEST), config, crashed, 100, 129, dies_after_16, lambda: False)
    assert MatteStore(mattes_dir(crashed)).completed() is None
    assert track_shot(str(VTEST), config, crashed, 100, 129, lambda n: None, lambda: False) == 14  # 116-129 only

    a, b = MatteStore(mattes_dir(whole)), MatteStore(mattes_dir(crashed))
    areas = [float((a.get(n) > 0.5).mean()) for n in range(100, 130)]
    assert all(0.0012 < area < 0.02 for area in areas), areas  # the man, not nothing and not the frame
    assert all(np.array_equal(a.get(n), b.get(n)) for n in range(100, 130))
    assert track_shot(str(VTEST), config, crashed, 100, 129, lambda n: None, lambda: False) == 0  # done is done


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    served = start_app(tmp_path_factory.mktemp("serve-tracking"),
                       deployments={"ChunkWorker": {"num_replicas": 3, "ray_actor_options": {"num_cpus": 0.5}}})
    yield served
    stop_app()


def serve_replicas(deployment: str) -> list:
    import ray

    return [ray.get_actor(a["name"], namespace=a["namespace"]) for a in ray.util.list_named_actors(all_namespaces=True)
            if a["name"].startswith("SERVE_REPLICA::") and f"#{deployment}#" in a["name"]]


def test_prompted_job_renders_in_parallel_chunks_frame_identical_to_vfx_run(app, tmp_path):
    """60 frames, 5 chunks on 3 workers; every ChunkWorker is killed during the tracking pass."""
    import ray

    with app.client() as client:
        job_id = submit(client, WALKER, frames="100-159", path=VTEST, matte=True).json()["id"]
        store = MatteStore(mattes_dir(_job_dir(app.state_dir)))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and ((saved := store.load_checkpoint()) is None or saved[0] < 110):
            time.sleep(0.1)
        assert saved is not None, "the tracking pass never checkpointed"
        for replica in serve_replicas("ChunkWorker"):
            ray.kill(replica, no_restart=True)
        killed_at = time.time()
        job = wait_job(client, job_id, timeout_s=300)
        assert job["state"] == "done", job
        assert job["chunks"]["total"] == 5 and job["frames"]["done"] == 60
        for what in ("output", "matte"):
            (tmp_path / f"{what}.mp4").write_bytes(client.get(f"/v1/jobs/{job_id}/{what}").content)
    assert store.completed() is not None
    # the resumed pass carried on after its checkpoint instead of tracking the shot again
    assert all(store.path_of(n).stat().st_mtime < killed_at for n in range(100, saved[0] + 1))
    config = PipelineConfig.model_validate(WALKER)
    run_job(JobSpec(str(VTEST), str(tmp_path / "run.mp4"), config, frames="100-159", matte=str(tmp_path / "run-matte.mp4")))
    for served, local in (("output.mp4", "run.mp4"), ("matte.mp4", "run-matte.mp4")):
        ours, theirs = decoded(tmp_path / served), decoded(tmp_path / local)
        assert len(ours) == len(theirs) == 60
        differing = [i for i, (x, y) in enumerate(zip(ours, theirs)) if not np.array_equal(x, y)]
        assert differing == [], f"{served}: frames {differing} differ from vfx run"
    matte = decoded(tmp_path / "matte.mp4")[:51]  # from 151 on he walks behind someone else and is lost
    assert all(0.0012 < float((m[..., 0] > 127).mean()) < 0.02 for m in matte)


def _job_dir(state_dir: Path) -> Path:
    jobs = list((state_dir / "jobs").iterdir())
    assert len(jobs) == 1, jobs
    return jobs[0]
