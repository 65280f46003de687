"""Shot jobs against the real Serve app on localhost: submit, download, idempotency, concurrency,
a killed worker and job manager mid-job, and refused uploads."""
from __future__ import annotations

import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av
import numpy as np
import pytest

from serve_helpers import SAMPLES, start_app, stop_app, submit, wait_job
from vfx.video import probe

NIGHT = {"restyle": {"style": "night"}}
PERSON_NIGHT = {"segment": {"subject": ["person"]}, "restyle": {"style": "night"}}
UPLOAD_LIMIT = 9_000_000  # vtest.avi (8.1 MB) fits, anything bigger is refused


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    served = start_app(tmp_path_factory.mktemp("serve-jobs"),
                       overrides={"limits": {"max_bytes": UPLOAD_LIMIT, "max_width": 1920, "max_height": 1080}})
    yield served
    stop_app()


def download(client, job_id: str, what: str, target: Path) -> Path:
    response = client.get(f"/v1/jobs/{job_id}/{what}")
    assert response.status_code == 200, response.text
    target.write_bytes(response.content)
    return target


def test_uploaded_shot_comes_back_with_every_frame_and_its_rate(app, tmp_path):
    with app.client() as client:
        response = submit(client, PERSON_NIGHT, frames="100-129", upload=SAMPLES / "vtest.avi", matte=True)
        assert response.status_code == 201, response.text
        job = wait_job(client, response.json()["id"])
        assert job["state"] == "done", job
        assert job["frames"] == {"first": 100, "last": 129, "done": 30, "total": 30}
        assert job["chunks"]["total"] == 3 and job["frames_per_second"] > 0
        output = probe(download(client, job["id"], "output", tmp_path / "out.mp4"))
        matte = probe(download(client, job["id"], "matte", tmp_path / "matte.mp4"))
        manifest = client.get(f"/v1/jobs/{job['id']}/manifest").json()
        download(client, job["id"], "provenance", tmp_path / "out.mp4.provenance.json")  # the signed sidecar
    assert (output.frame_count, output.fps, output.width, output.height, output.video_codec) == (30, 10, 768, 576, "h264")
    assert matte.frame_count == 30
    assert manifest["output"]["frames"] == 30 and [c["write_first"] for c in manifest["chunks"]] == [100, 112, 124]
    from vfx.provenance.c2pa_embed import read_c2pa

    assert read_c2pa(tmp_path / "out.mp4") is not None, "the assembled output carries a C2PA manifest"
    from vfx.provenance import verify_provenance
    from vfx.provenance.certificates import trusted_root_path

    report = verify_provenance(tmp_path / "out.mp4", trusted_root_path().read_bytes())  # the service's pinned root
    assert report.ok, report.problems


def test_the_same_idempotency_key_twice_makes_one_job(app):
    with app.client() as client, app.client("operator2") as other:
        first = submit(client, NIGHT, frames="0-19", path=SAMPLES / "vtest.avi", key="shot-42-take-1")
        again = submit(client, NIGHT, frames="0-19", path=SAMPLES / "vtest.avi", key="shot-42-take-1")
        different = submit(client, NIGHT, frames="0-29", path=SAMPLES / "vtest.avi", key="shot-42-take-1")
        someone_else = submit(other, NIGHT, frames="0-19", path=SAMPLES / "vtest.avi", key="shot-42-take-1")
        assert (first.status_code, again.status_code) == (201, 200)
        assert first.json()["id"] == again.json()["id"]
        assert different.status_code == 409 and "different request" in different.json()["detail"]
        assert someone_else.status_code == 201 and someone_else.json()["id"] != first.json()["id"]
        mine = [j for j in client.get("/v1/jobs").json() if j["id"] == first.json()["id"]]
        assert len(mine) == 1
        assert wait_job(client, first.json()["id"])["state"] == "done"
        assert other.get(f"/v1/jobs/{first.json()['id']}").status_code == 404  # not theirs


def test_two_jobs_at_once_both_complete(app, tmp_path):
    with app.client() as client:
        with ThreadPoolExecutor(2) as pool:
            responses = list(pool.map(lambda r: submit(client, NIGHT, frames=r, path=SAMPLES / "vtest.avi"),
                                      ["200-223", "300-335"]))
        assert [r.status_code for r in responses] == [201, 201]
        jobs = [wait_job(client, r.json()["id"]) for r in responses]
        assert [j["state"] for j in jobs] == ["done", "done"]
        counts = [probe(download(client, j["id"], "output", tmp_path / f"{j['id']}.mp4")).frame_count for j in jobs]
    assert counts == [24, 36]


def serve_replicas(deployment: str) -> list:
    import ray

    return [ray.get_actor(a["name"], namespace=a["namespace"]) for a in ray.util.list_named_actors(all_namespaces=True)
            if a["name"].startswith("SERVE_REPLICA::") and f"#{deployment}#" in a["name"]]


def test_job_survives_killed_workers_and_job_manager_with_exact_frames(app, tmp_path):
    import ray

    with app.client() as client:
        response = submit(client, PERSON_NIGHT, frames="400-459", path=SAMPLES / "vtest.avi", matte=True)
        job_id = response.json()["id"]
        deadline = time.monotonic() + 120
        while client.get(f"/v1/jobs/{job_id}").json()["frames"]["done"] < 4 and time.monotonic() < deadline:
            time.sleep(0.3)
        for replica in serve_replicas("ChunkWorker") + serve_replicas("JobManager"):
            ray.kill(replica, no_restart=True)
        job = wait_job(client, job_id, timeout_s=300)
        assert job["state"] == "done", job
        assert job["chunks"]["attempts"] > job["chunks"]["total"]  # the killed chunks ran again
        output = probe(download(client, job_id, "output", tmp_path / "out.mp4"))
        matte = probe(download(client, job_id, "matte", tmp_path / "matte.mp4"))
    assert (output.frame_count, matte.frame_count, output.fps) == (60, 60, 10)
    frames = _decoded_frames(tmp_path / "out.mp4")
    assert len(frames) == 60 and not any(np.array_equal(a, b) for a, b in zip(frames, frames[1:]))  # no duplicates


def _decoded_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="gray") for f in container.decode(video=0)]


def test_cancel_stops_a_job(app):
    with app.client() as client:
        job_id = submit(client, PERSON_NIGHT, frames="0-299", path=SAMPLES / "vtest.avi").json()["id"]
        cancelled = client.delete(f"/v1/jobs/{job_id}")
        assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
        assert client.delete(f"/v1/jobs/{job_id}").status_code == 409
        assert client.get(f"/v1/jobs/{job_id}/output").status_code == 409


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bad-inputs")
    truncated = folder / "truncated.avi"
    truncated.write_bytes((SAMPLES / "vtest.avi").read_bytes()[:2_500_000])
    garbage_header = folder / "corrupted.avi"
    data = bytearray((SAMPLES / "Megamind.avi").read_bytes())
    data[:4096] = np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    garbage_header.write_bytes(bytes(data))
    oversized = folder / "oversized.avi"
    with open(oversized, "wb") as f:
        f.write((SAMPLES / "vtest.avi").read_bytes())
        f.write(b"\0" * (UPLOAD_LIMIT - oversized.stat().st_size + 1024))
    ffv1 = folder / "ffv1.mkv"
    with av.open(str(ffv1), "w") as container:
        stream = container.add_stream("ffv1", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(5):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 40, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    playlist = folder / "list.m3u8"
    playlist.write_text("#EXTM3U\n#EXTINF:10,\nhttp://127.0.0.1:9/x.ts\n")
    return {"truncated": truncated, "corrupted": garbage_header, "oversized": oversized, "ffv1": ffv1,
            "playlist": playlist}


@pytest.mark.parametrize("name, status, reason", [
    ("truncated", 422, "truncated"),
    ("corrupted", 422, "not a readable video"),
    ("oversized", 413, "limit"),
    ("ffv1", 415, "codec ffv1 is not accepted"),
    ("playlist", 422, "not a readable video"),
])
def test_bad_uploads_are_refused_with_a_reason(app, bad_inputs, name, status, reason):
    with app.client() as client:
        response = submit(client, NIGHT, upload=bad_inputs[name])
    assert response.status_code == status, response.text
    assert reason in response.json()["detail"]


def test_named_paths_must_be_local_files_under_the_input_roots(app, tmp_path):
    shutil.copy(SAMPLES / "vtest.avi", tmp_path / "elsewhere.avi")
    with app.client() as client:
        outside = submit(client, NIGHT, path=tmp_path / "elsewhere.avi")
        url = client.post("/v1/jobs", data={"config": '{"restyle": {"style": "night"}}', "path": "http://127.0.0.1/x.avi"})
        unusable = [client.post("/v1/jobs", data={"config": '{"restyle": {"style": "night"}}', "path": path})
                    for path in ("\x00", str(SAMPLES / ("a" * 5000)))]  # both were a 500
        both_missing = client.post("/v1/jobs", data={"config": '{"restyle": {"style": "night"}}'})
        nothing_to_do = submit(client, {}, path=SAMPLES / "vtest.avi")
        bad_range = submit(client, NIGHT, frames="790-900", path=SAMPLES / "vtest.avi")
    assert outside.status_code == 403 and "input roots" in outside.json()["detail"]
    assert url.status_code == 422 and "only local files" in url.json()["detail"]
    assert all(r.status_code == 422 and "not a path the OS can look up" in r.json()["detail"] for r in unusable)
    assert both_missing.status_code == 422
    assert nothing_to_do.status_code == 422 and "nothing to do" in nothing_to_do.json()["detail"]
    assert bad_range.status_code == 422 and "outside the source" in bad_range.json()["detail"]


def test_job_records_survive_a_restart_of_the_app(app, tmp_path_factory):
    """A new store on the same database (what a restarted app opens) sees every job and its state."""
    from serving.store import JobStore

    with app.client() as client:
        jobs = client.get("/v1/jobs").json()
    reopened = JobStore(f"sqlite:///{app.state_dir / 'jobs.sqlite'}")
    states = {j["id"]: j["state"] for j in reopened.jobs_of("operator")}
    assert jobs and all(states[j["id"]] == j["state"] for j in jobs if j["state"] in ("done", "cancelled"))
