"""The service under hostile requests, against the real Serve app on localhost: refusals before the
body is read, bounded configs, side inputs only from the input roots, job caps, quotas, no leftovers."""
from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest

from serve_helpers import SAMPLES, start_app, stop_app, submit, wait_job
from vfx.video import probe

NIGHT = {"restyle": {"style": "night"}}
UPLOAD_LIMIT = 9_000_000


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    served = start_app(tmp_path_factory.mktemp("serve-hostile"), overrides={
        "limits": {"max_bytes": UPLOAD_LIMIT, "max_width": 1920, "max_height": 1080},
        "jobs": {"chunk_frames": 12, "overlap_frames": 3, "poll_s": 0.5, "lease_s": 5, "max_running_jobs": 1,
                 "max_active_jobs_per_owner": 2},
        "retention": {"owner_quotas": {"operator2": 1_000_000}, "sweep_every_s": 1, "min_free_bytes": 0}})
    yield served
    stop_app()


def files_of(root: Path) -> dict[str, int]:
    """Every file under the state folder with its size, the job database aside (reads may touch its WAL)."""
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*")
            if p.is_file() and ".sqlite" not in p.name}


FILE_PART = (b'--x\r\nContent-Disposition: form-data; name="file"; filename="shot.avi"\r\n'
             b"Content-Type: video/x-msvideo\r\n\r\n")


def body_of(megabytes: int):
    """A multipart upload of ``megabytes`` MiB in total, made as it is sent (nothing on disk)."""
    block = os.urandom(1 << 20)
    yield FILE_PART
    yield block[len(FILE_PART):]
    for _ in range(megabytes - 1):
        yield block


def post_upload(app, headers: dict[str, str], content) -> httpx.Response:
    """A multipart-looking body, streamed; the server may hang up before it is all sent."""
    headers = {**headers, "Content-Type": "multipart/form-data; boundary=x"}
    try:
        return httpx.post(app.url + "/v1/jobs", content=content, headers=headers, timeout=60)
    except (httpx.WriteError, httpx.RemoteProtocolError, httpx.ReadError) as exc:
        pytest.fail(f"the server hung up without an answer: {exc!r}")


def test_uploads_without_a_key_or_over_the_limit_write_nothing(app):
    before = files_of(app.state_dir)
    operator = app.headers("operator")
    no_key = post_upload(app, {}, body_of(64))
    wrong_key = post_upload(app, {"Authorization": "Bearer not-a-key"}, body_of(64))
    wrong_role = post_upload(app, app.headers("rights_holder"), body_of(64))
    declared_too_big = post_upload(app, {**operator, "Content-Length": str(20 << 20)}, body_of(20))
    streamed_too_big = post_upload(app, operator, body_of(24))  # chunked: no Content-Length to judge by
    assert (no_key.status_code, wrong_key.status_code) == (401, 401)
    assert no_key.json()["detail"] == "missing or unknown API key" and no_key.headers["www-authenticate"] == "Bearer"
    assert wrong_role.status_code == 403 and "needs operator" in wrong_role.json()["detail"]
    assert declared_too_big.status_code == 413 and "over the limit" in declared_too_big.json()["detail"]
    assert streamed_too_big.status_code == 413 and "over the limit" in streamed_too_big.json()["detail"]
    assert files_of(app.state_dir) == before
    assert httpx.get(app.url + "/healthz").status_code == 200  # and the gateway still answers


def requests_the_gateway_refused(app) -> float:
    text = httpx.get(app.url + "/metrics", headers=app.headers("admin")).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("vfx_http_requests_total{") and 'status="401"' in line)


def test_ray_proxy_refuses_an_unauthenticated_upload_before_a_replica_sees_it(app):
    """The guard also runs in Ray's HTTP proxy (serving/proxy_guard.py): the Gateway replica, which
    counts every request it answers, never hears of the upload, and the answer is the same."""
    before = requests_the_gateway_refused(app)
    refused = post_upload(app, {"Authorization": "Bearer not-a-key"}, body_of(16))
    assert refused.status_code == 401 and refused.json()["detail"] == "missing or unknown API key"
    assert requests_the_gateway_refused(app) == before


@pytest.mark.parametrize("config, reason", [
    ({"batch_size": 100000, **NIGHT}, "config: batch_size: Input should be less than or equal to 64"),
    ({"queue_depth": 500, **NIGHT}, "config: queue_depth"),
    ({"restyle": {"style": "night", "steps": 5000}}, "config: restyle.steps"),
    ({"restyle": {"style": "night", "max_side": 100000}}, "config: restyle.max_side"),
    ({"output": {"preset": "placebo; rm -rf /"}, **NIGHT}, "config: output.preset"),
    ({"consent": {"db": "/etc/passwd"}, **NIGHT}, "config: consent.db"),
    ({"restyle": {"style": "../../etc"}}, "config: restyle.style"),
    ({"device": "cuda:0 --evil"}, "config: device"),
])
def test_out_of_bounds_configs_are_refused_with_the_field(app, config, reason):
    with app.client() as client:
        response = submit(client, config, frames="0-9", path=SAMPLES / "vtest.avi")
    assert response.status_code == 422, response.text
    assert reason in response.json()["detail"]


def test_style_pictures_come_only_from_the_input_roots_and_pass_the_probe(app, tmp_path):
    outside = tmp_path / "style.jpg"
    outside.write_bytes((SAMPLES / "starry_night.jpg").read_bytes())
    with app.client() as client:
        server_file = submit(client, {"restyle": {"style_image": "/etc/passwd"}}, frames="0-9", path=SAMPLES / "vtest.avi")
        elsewhere = submit(client, {"restyle": {"style_image": str(outside)}}, frames="0-9", path=SAMPLES / "vtest.avi")
        not_a_picture = submit(client, {"restyle": {"style_image": str(SAMPLES / "vtest.avi")}}, frames="0-9",
                               path=SAMPLES / "vtest.avi")
        dub_elsewhere = submit(client, {"face": {"lipsync": "/etc/hostname"}, "consent": {"project": "p"}},
                               frames="0-9", path=SAMPLES / "vtest.avi")
        good = submit(client, {"restyle": {"style_image": str(SAMPLES / "starry_night.jpg")}}, frames="0-9",
                      path=SAMPLES / "vtest.avi")
        assert server_file.status_code == 403 and "style_image: path is outside the service's input roots" in server_file.json()["detail"]
        assert elsewhere.status_code == 403
        assert not_a_picture.status_code == 422 and "style_image: not a readable picture" in not_a_picture.json()["detail"]
        assert dub_elsewhere.status_code == 403 and "lipsync" in dub_elsewhere.json()["detail"]
        assert good.status_code == 201, good.text
        job = wait_job(client, good.json()["id"])
        assert job["state"] == "done", job
        manifest = client.get(f"/v1/jobs/{job['id']}/manifest").json()
    copied = Path(manifest["config"]["restyle"]["style_image"])
    assert copied.parent.parent == app.state_dir / "jobs" and copied.read_bytes() == (SAMPLES / "starry_night.jpg").read_bytes()
    job_dir = copied.parent
    assert not (job_dir / "chunks").exists() and not list(job_dir.glob("input*"))  # intermediates went after assembly
    assert probe(job_dir / "output.mp4").frame_count == 10


def test_refused_uploads_leave_no_file(app, tmp_path):
    damaged = tmp_path / "truncated.avi"
    damaged.write_bytes((SAMPLES / "vtest.avi").read_bytes()[:2_500_000])
    before = files_of(app.state_dir)
    with app.client() as client:
        response = submit(client, NIGHT, upload=damaged)
    assert response.status_code == 422 and "truncated" in response.json()["detail"]
    assert files_of(app.state_dir) == before


def test_too_many_jobs_of_one_owner_get_429_with_retry_after(app):
    with app.client() as client:
        first = submit(client, NIGHT, frames="0-299", path=SAMPLES / "vtest.avi")
        second = submit(client, NIGHT, frames="0-299", path=SAMPLES / "vtest.avi")
        third = submit(client, NIGHT, frames="0-299", path=SAMPLES / "vtest.avi")
        running = [j for j in client.get("/v1/jobs").json() if j["state"] == "running"]
        for response in (first, second):
            client.delete(f"/v1/jobs/{response.json()['id']}")
    assert (first.status_code, second.status_code) == (201, 201)
    assert third.status_code == 429 and third.headers["retry-after"] == "30"
    assert "already has 2 jobs queued or running" in third.json()["detail"]
    assert len(running) <= 1  # max_running_jobs: the other waits queued


def test_an_owner_over_quota_gets_507(app):
    with app.client("operator2") as client:
        response = submit(client, NIGHT, upload=SAMPLES / "vtest.avi")
    assert response.status_code == 507 and "quota of 1000000 bytes" in response.json()["detail"]


def test_a_full_volume_refuses_work(tmp_path):
    """The free-space check on a real volume: a reserve larger than what is free refuses any upload."""
    import shutil

    from serving.retention import check_space
    from serving.settings import load_settings
    from serving.store import JobStore
    from serving.untrusted import Refused

    free = shutil.disk_usage(tmp_path).free
    settings = load_settings({"state_dir": str(tmp_path), "retention": {"min_free_bytes": free - 500 * 1024**2}})
    store = JobStore(settings.db_url)
    check_space(settings, store, "someone", 0)
    with pytest.raises(Refused) as refused:
        check_space(settings, store, "someone", 1024**3)
    assert refused.value.status == 507 and "not enough free space" in refused.value.reason


def serve_replicas(deployment: str) -> list:
    import ray

    return [ray.get_actor(a["name"], namespace=a["namespace"]) for a in ray.util.list_named_actors(all_namespaces=True)
            if a["name"].startswith("SERVE_REPLICA::") and f"#{deployment}#" in a["name"]]


def wait_frames(client, job_id: str, at_least: int, timeout_s: float = 180) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while client.get(f"/v1/jobs/{job_id}").json()["frames"]["done"] < at_least:
        assert time.monotonic() < deadline, f"job {job_id} made no progress to {at_least} frames"
        time.sleep(0.3)


def test_kill_drill_manager_and_a_worker_twice_renders_no_chunk_twice(app, tmp_path):
    import ray

    from serving.store import JobStore

    person_night = {"segment": {"subject": ["person"]}, "restyle": {"style": "night"}}
    with app.client() as client:
        response = submit(client, person_night, frames="400-459", path=SAMPLES / "vtest.avi", matte=True)
        assert response.status_code == 201, response.text
        job_id = response.json()["id"]
        for progress in (4, 28):
            wait_frames(client, job_id, progress)
            for replica in serve_replicas("JobManager") + serve_replicas("ChunkWorker")[:1]:
                ray.kill(replica, no_restart=True)
        job = wait_job(client, job_id, timeout_s=400)
        assert job["state"] == "done", job
        output = client.get(f"/v1/jobs/{job_id}/output")
    store = JobStore(f"sqlite:///{app.state_dir / 'jobs.sqlite'}")
    chunks = store.chunks(job_id)
    assert [c.renders for c in chunks] == [1] * 5  # each chunk's kept render happened once
    assert all(c.lease_holder is None for c in chunks)
    assert sum(c.attempts for c in chunks) > len(chunks)  # the killed worker's chunks did run again
    (tmp_path / "out.mp4").write_bytes(output.content)
    assert probe(tmp_path / "out.mp4").frame_count == 60
    job_dir = Path(store.job(job_id)["job_dir"])
    # no leftovers: the outputs, and nodes/ (which node rendered each chunk: a record, not an intermediate)
    assert sorted(p.name for p in job_dir.iterdir()) == ["manifest.json", "matte.mp4", "nodes", "output.mp4",
                                                         "output.mp4.provenance.json"]


def test_concealed_frames_of_a_damaged_upload_are_on_the_job_and_in_the_manifest(app, tmp_path):
    import av

    data = bytearray((SAMPLES / "vtest.avi").read_bytes())
    with av.open(str(SAMPLES / "vtest.avi")) as container:
        packets = [(p.pos, p.size) for p in container.demux(container.streams.video[0]) if p.size]
    for index in (100, 300, 500):  # three frames overwritten: the decoder drops them
        position, size = packets[index]
        data[position + 8:position + 8 + size] = b"\xff" * size
    damaged = tmp_path / "damaged.avi"
    damaged.write_bytes(bytes(data))
    with app.client() as client:
        response = submit(client, NIGHT, frames="780-794", upload=damaged)
        assert response.status_code == 201, response.text
        job = wait_job(client, response.json()["id"])
        manifest = client.get(f"/v1/jobs/{job['id']}/manifest").json()
    assert job["state"] == "done", job
    assert job["concealed"]["packets"] == 3
    # vfx's reader numbers frames by decode count, so the three lost frames show at the end of the file
    assert job["concealed"]["frames"] == [792, 793, 794] == manifest["concealed"]["frames"]
    assert manifest["concealed"]["packets"] == 3 and manifest["output"]["frames"] == 15


def dimension_bomb_png(path: Path) -> Path:
    """A 1x1 PNG whose header claims 30000x30000 (3.6 GB of RGB once decoded)."""
    import io
    import struct
    import zlib

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4:ihdr + 12] = struct.pack(">II", 30000, 30000)
    data[ihdr + 17:ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr:ihdr + 17])))
    path.write_bytes(bytes(data))
    return path


def test_a_style_picture_upload_is_probed_before_it_is_used(app, tmp_path):
    bomb = dimension_bomb_png(tmp_path / "bomb.png")
    before = files_of(app.state_dir)

    def send(picture: Path, config: dict) -> httpx.Response:
        with app.client() as client, open(picture, "rb") as f:
            return client.post("/v1/jobs", data={"config": json.dumps(config), "frames": "0-9",
                                                 "path": str(SAMPLES / "vtest.avi")},
                               files={"style_picture": (picture.name, f, "image/png")})

    refused = send(bomb, {})
    not_a_picture = send(Path(__file__).resolve().parents[1] / "README.md", {})  # a real file, not a picture
    both = send(SAMPLES / "starry_night.jpg", {"restyle": {"style_image": str(SAMPLES / "starry_night.jpg")}})
    assert refused.status_code == 413 and "style_image: Image size (900000000 pixels) exceeds limit" in refused.json()["detail"]
    assert not_a_picture.status_code == 422 and "not a readable picture" in not_a_picture.json()["detail"]
    assert both.status_code == 422 and "not both" in both.json()["detail"]
    assert files_of(app.state_dir) == before
    accepted = send(SAMPLES / "starry_night.jpg", {})
    assert accepted.status_code == 201, accepted.text
    with app.client() as client:
        assert wait_job(client, accepted.json()["id"])["state"] == "done"
