"""A chunk that takes longer than jobs.chunk_timeout_s is a failed attempt; attempts are bounded.
The timeout (0.5 s) is far below what a 48-frame person-matte chunk can take on any machine
(loading the segmenter alone takes longer), so the outcome does not depend on the machine's speed."""
from __future__ import annotations

import pytest

from serve_helpers import SAMPLES, start_app, stop_app, submit, wait_job


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    served = start_app(tmp_path_factory.mktemp("serve-timeouts"), overrides={
        "jobs": {"chunk_frames": 48, "overlap_frames": 0, "poll_s": 0.5, "chunk_timeout_s": 0.5, "max_attempts": 2,
                 "lease_s": 3},
        "retention": {"min_free_bytes": 0}})
    yield served
    stop_app()


def test_a_chunk_over_its_timeout_fails_the_job_after_bounded_attempts(app):
    from serving.store import JobStore

    with app.client() as client:
        response = submit(client, {"segment": {"subject": ["person"]}, "restyle": {"style": "night"}},
                          frames="0-47", path=SAMPLES / "vtest.avi")
        assert response.status_code == 201, response.text
        job = wait_job(client, response.json()["id"], timeout_s=300)
    assert job["state"] == "failed" and "chunk 0 failed 2 times" in job["error"], job
    chunk = JobStore(f"sqlite:///{app.state_dir / 'jobs.sqlite'}").chunk(job["id"], 0)
    assert chunk.attempts == 2 and chunk.renders == 0 and chunk.state != "done"
    assert "timed out" in chunk.error or "TimeoutError" in chunk.error
