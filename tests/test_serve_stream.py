"""Live stream, access control and operations against the real Serve app on localhost."""
from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from serve_helpers import SAMPLES, start_app, stop_app
from serving.stream import parse_frame_message
from vfx.video import FrameRange, FrameReader, probe

RECV_TIMEOUT_S = 60
FRAME_LIMIT = 400_000  # a 768x576 frame of vtest.avi at quality 85 is about 60 kB


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from vfx.consent.keys import generate_key, load_private_key
    from vfx.consent.store import ConsentStore
    from vfx.consent.subjects import enroll

    root = tmp_path_factory.mktemp("serve-stream")
    generate_key(root / "holder.key")
    consent_db = f"sqlite:///{root / 'consent.sqlite'}"
    embeddings = np.random.default_rng(3).normal(size=(4, 128)).astype(np.float32)
    enroll(ConsentStore(consent_db), "roxanne", embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True), "test",
           key=load_private_key(root / "holder.key"))  # the holder's key (held by the service: convenience mode)
    served = start_app(root, signing_key=root / "holder.key", overrides={
        "consent_db": consent_db,
        "stream": {"max_batch_size": 8, "batch_wait_timeout_s": 0.01, "queue_frames": 8, "max_inflight": 4,
                   "max_frame_bytes": FRAME_LIMIT, "max_streams": 5, "max_streams_per_key": 4}})
    yield served
    stop_app()


@pytest.fixture(scope="module")
def jpegs() -> list[bytes]:
    info = probe(SAMPLES / "vtest.avi")
    frames = []
    for _, rgb in FrameReader(info, FrameRange(0, 99)).frames():
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
        frames.append(data.tobytes())
    return frames


def open_stream(app, options: dict, who: str = "operator"):
    ws = connect(app.ws_url, additional_headers=app.headers(who), open_timeout=30, max_size=2**24)
    ws.send(json.dumps(options))
    ready = json.loads(ws.recv(timeout=RECV_TIMEOUT_S))
    assert ready["type"] == "ready", ready
    return ws


def collect_until_summary(ws) -> tuple[list[dict], list[bytes], list[dict], dict]:
    headers, images, rejected = [], [], []
    for _ in range(1000):
        message = ws.recv(timeout=RECV_TIMEOUT_S)
        if isinstance(message, bytes):
            header, jpeg = parse_frame_message(message)
            headers.append(header)
            images.append(jpeg)
            continue
        event = json.loads(message)
        if event["type"] == "summary":
            return headers, images, rejected, event
        rejected.append(event)
    raise AssertionError("no summary after 1000 messages")


def test_a_burst_of_100_frames_comes_back_processed_or_counted_as_dropped(app, jpegs):
    ws = open_stream(app, {"subject": "person", "style": "night"})
    with ws:
        sender = threading.Thread(target=lambda: ([ws.send(j) for j in jpegs], ws.send(json.dumps({"type": "end"}))))
        sender.start()
        headers, images, rejected, summary = collect_until_summary(ws)
        sender.join(timeout=30)
    assert rejected == []
    assert summary["received"] == 100
    assert summary["processed"] + summary["dropped"] == 100
    assert summary["dropped"] > 0  # the burst outran the service; the queue stayed bounded
    assert len(headers) == summary["processed"]
    seqs = [h["seq"] for h in headers]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs) and seqs[-1] == 99  # in order, newest kept
    assert [h["dropped"] for h in headers] == sorted(h["dropped"] for h in headers)
    first = cv2.imdecode(np.frombuffer(images[0], np.uint8), cv2.IMREAD_COLOR)
    assert first.shape == (576, 768, 3)


def test_a_paced_stream_gets_every_frame_back_in_order(app, jpegs):
    ws = open_stream(app, {"subject": "person", "style": "oil", "faces": True})
    with ws:
        replies = []
        for jpeg in jpegs[:20]:
            ws.send(jpeg)
            header, image = parse_frame_message(ws.recv(timeout=RECV_TIMEOUT_S))
            replies.append((header, image))
        ws.send(json.dumps({"type": "end"}))
        summary = json.loads(ws.recv(timeout=RECV_TIMEOUT_S))
    assert summary == {"type": "summary", "received": 20, "processed": 20, "dropped": 0, "rejected": 0, "ended": "end",
                       "grant_ids": []}
    assert [h["seq"] for h, _ in replies] == list(range(20))
    assert all(h["faces"] == [] or isinstance(h["faces"], list) for h, _ in replies)
    restyled = cv2.imdecode(np.frombuffer(replies[5][1], np.uint8), cv2.IMREAD_COLOR)
    source = cv2.imdecode(np.frombuffer(jpegs[5], np.uint8), cv2.IMREAD_COLOR)
    assert np.abs(restyled.astype(int) - source.astype(int)).mean() > 3  # surroundings really changed


def test_frames_of_concurrent_streams_share_batches(app, jpegs):
    def lockstep(offset: int) -> list[dict]:
        ws = open_stream(app, {"subject": "person", "style": None})
        with ws:
            out = []
            for jpeg in jpegs[offset:offset + 12]:
                ws.send(jpeg)
                out.append(parse_frame_message(ws.recv(timeout=RECV_TIMEOUT_S))[0])
            ws.send(json.dumps({"type": "end"}))
            assert json.loads(ws.recv(timeout=RECV_TIMEOUT_S))["type"] == "summary"  # its slot is free from here
            return out

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lockstep, [0, 20, 40, 60]))
    sizes = [h["batch"] for stream in results for h in stream]
    assert len(sizes) == 48 and max(sizes) > 1


def test_a_bad_frame_is_rejected_and_the_stream_goes_on(app, jpegs):
    ws = open_stream(app, {"subject": None, "style": "night"})
    with ws:
        ws.send(b"GIF89a not a jpeg")
        ws.send(jpegs[0])
        ws.send(json.dumps({"type": "end"}))
        headers, _, rejected, summary = collect_until_summary(ws)
    assert rejected[0]["seq"] == 0 and "not a JPEG" in rejected[0]["reason"]
    assert [h["seq"] for h in headers] == [1] and summary["rejected"] == 1


@pytest.mark.parametrize("who, code", [(None, 4401), ("bogus", 4401), ("rights_holder", 4403)])
def test_stream_refuses_missing_keys_and_wrong_roles(app, who, code):
    headers = {} if who is None else ({"Authorization": "Bearer nope"} if who == "bogus" else app.headers(who))
    with connect(app.ws_url, additional_headers=headers, open_timeout=30) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=RECV_TIMEOUT_S)
    assert closed.value.rcvd.code == code


def test_stream_refuses_bad_options(app):
    with connect(app.ws_url, additional_headers=app.headers("operator"), open_timeout=30) as ws:
        ws.send(json.dumps({"subject": "person", "style": "plaid-fuzz"}))  # no backend knows it
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=RECV_TIMEOUT_S)
    assert closed.value.rcvd.code == 4422 and "no restyle backend can run this job" in closed.value.rcvd.reason


def dimension_bomb(jpeg: bytes, width: int, height: int) -> bytes:
    """A real small JPEG whose frame header claims ``width`` x ``height``."""
    from serving.jpeg import jpeg_size

    data = bytearray(jpeg)
    position = 2
    while data[position + 1] not in (0xC0, 0xC1, 0xC2):
        position += 2 + int.from_bytes(data[position + 2:position + 4], "big")
    data[position + 5:position + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    assert jpeg_size(bytes(data)) == (width, height)
    return bytes(data)


def test_oversized_and_dimension_bomb_frames_are_refused_before_decoding(app, jpegs):
    small = cv2.imencode(".jpg", np.full((48, 64, 3), 128, np.uint8))[1].tobytes()
    bomb = dimension_bomb(small, 32000, 32000)
    oversized = jpegs[0] + b"\0" * FRAME_LIMIT
    ws = open_stream(app, {"subject": "person", "style": None})
    with ws:
        for frame in (bomb, oversized, jpegs[0]):
            ws.send(frame)
        ws.send(json.dumps({"type": "end"}))
        headers, _, rejected, summary = collect_until_summary(ws)
    reasons = {r["seq"]: r["reason"] for r in rejected}
    assert len(bomb) < 2000 and "declares 32000x32000" in reasons[0] and "4096x4096" in reasons[0]
    assert f"the limit is {FRAME_LIMIT}" in reasons[1]
    assert [h["seq"] for h in headers] == [2] and summary["rejected"] == 2 and summary["processed"] == 1


def test_stream_slots_are_capped_per_key_and_overall_while_rest_answers(app, jpegs):
    def refused_code(who: str) -> int:
        with connect(app.ws_url, additional_headers=app.headers(who), open_timeout=30) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=RECV_TIMEOUT_S)
        return closed.value.rcvd.code, closed.value.rcvd.reason

    held = [open_stream(app, {"subject": "person"}) for _ in range(4)]  # the operator key's limit
    try:
        code, reason = refused_code("operator")
        assert code == 4429 and "this key" in reason
        held.append(open_stream(app, {"subject": "person"}, who="operator2"))  # the last of 5 slots
        code, reason = refused_code("operator2")
        assert code == 4429 and "slots are busy" in reason
        with app.client() as client:  # the REST gateway does not share the stream slots
            assert client.get("/v1/jobs").status_code == 200
            assert client.get("/healthz").json() == {"status": "ok"}
    finally:
        for ws in held:
            ws.send(json.dumps({"type": "end"}))
            assert json.loads(ws.recv(timeout=RECV_TIMEOUT_S))["type"] == "summary"
            ws.close()
    open_stream(app, {"subject": "person"}).close()  # slots are given back



ROUTES = [("POST", "/v1/jobs"), ("GET", "/v1/jobs"), ("GET", "/v1/jobs/x"), ("GET", "/v1/jobs/x/output"),
          ("DELETE", "/v1/jobs/x"), ("GET", "/metrics"), ("POST", "/v1/consent/grants"),
          ("POST", "/v1/consent/grants/g-x/revoke"), ("GET", "/v1/consent/grants"), ("GET", "/v1/consent/grants/g-x"),
          ("GET", "/v1/consent/subjects"), ("GET", "/v1/consent/verify")]
NEEDS = {"/metrics": {"admin"}, **{route: {"rights_holder", "admin"} for _, route in ROUTES if "/consent/" in route},
         "/v1/consent/verify": {"admin"}}  # the whole ledger: admin only


@pytest.mark.parametrize("method, route", ROUTES)
def test_every_route_checks_key_and_role(app, method, route):
    allowed = NEEDS.get(route, {"operator", "admin"})
    with httpx.Client(base_url=app.url, timeout=30) as client:
        assert client.request(method, route).status_code == 401
        assert client.request(method, route, headers={"Authorization": "Bearer wrong"}).status_code == 401
        for role in ("operator", "rights_holder", "admin"):
            status = client.request(method, route, headers=app.headers(role)).status_code
            if role in allowed:
                assert status not in (401, 403), (role, status)
            else:
                assert status == 403, (role, status)
        assert client.request(method, route, headers={"X-API-Key": app.keys["admin"]}).status_code not in (401, 403)


def test_health_openapi_and_metrics(app):
    with httpx.Client(base_url=app.url, timeout=30) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        spec = client.get("/openapi.json").json()
        assert {"/v1/jobs", "/v1/jobs/{job_id}", "/metrics", "/healthz"} <= set(spec["paths"])
        text = client.get("/metrics", headers=app.headers("admin")).text
        streams = client.get("/v1/stream/metrics", headers=app.headers("admin")).text
        assert client.get("/v1/stream/metrics", headers=app.headers("operator")).status_code == 403
    samples = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines() if not line.startswith("#")}
    assert samples['vfx_http_requests_total{route="/healthz",status="200"}'] >= 1
    assert 'vfx_jobs{state="running"}' in samples
    samples = {line.split(" ")[0]: float(line.split(" ")[1]) for line in streams.splitlines() if not line.startswith("#")}
    assert samples['vfx_stream_frames_total{outcome="processed"}'] > 0
    assert samples['vfx_stream_frames_total{outcome="dropped"}'] > 0
    assert samples["vfx_stream_frame_latency_seconds_count"] > 0
    assert samples['vfx_batch_size_count{deployment="Frames"}'] > 0
    assert "vfx_stream_queue_frames" in samples


def test_rights_holder_grants_and_revokes_consent_through_the_api(app):
    with app.client("rights_holder") as holder, app.client("admin") as admin:
        assert holder.get("/v1/consent/subjects").json() == [{"subject": "roxanne", "references": 4}]
        issued = holder.post("/v1/consent/grants", json={"subject": "roxanne", "project": "megamind",
                                                         "ops": ["rejuvenate"], "until": "2099-12-31"})
        assert issued.status_code == 201, issued.text
        grant = issued.json()
        assert grant["state"] == "active" and grant["operations"] == ["rejuvenate"]
        unknown = holder.post("/v1/consent/grants", json={"subject": "nobody", "project": "megamind",
                                                          "ops": ["rejuvenate"], "until": "2099-12-31"})
        assert unknown.status_code == 422 and "no enrolled subject" in unknown.json()["detail"]
        revoked = holder.post(f"/v1/consent/grants/{grant['grant_id']}/revoke", json={"reason": "withdrawn"})
        assert revoked.status_code == 200, revoked.text
        again = holder.post(f"/v1/consent/grants/{grant['grant_id']}/revoke", json={"reason": "twice"})
        assert again.status_code == 422 and "already revoked" in again.json()["detail"]
        states = {g["grant_id"]: g["state"] for g in holder.get("/v1/consent/grants").json()}
        assert states[grant["grant_id"]] == "revoked"
        report = admin.get("/v1/consent/verify").json()
        assert report["ok"] and report["entries"] >= 3  # enrolment, grant, revocation
        assert admin.post("/v1/consent/grants", json={"subject": "roxanne", "project": "p", "ops": ["rejuvenate"],
                                                      "until": "2099-12-31"}).status_code == 403  # admin holds no signing key


def test_a_failed_chunk_is_logged_with_its_traceback_and_job_id(app):
    """The gateway plans a job without loading anything; a subject box outside the frame (the frame
    size is known only once the worker opens the shot) fails in the worker, whose log says where."""
    import ray

    from serve_helpers import submit, wait_job

    with app.client() as client:
        response = submit(client, {"segment": {"subject": ["box:5000,5000,40,40@2"]}, "restyle": {"style": "night"}},
                          frames="0-5", path=SAMPLES / "vtest.avi")
        assert response.status_code == 201, response.text
        job = wait_job(client, response.json()["id"])
    assert job["state"] == "failed" and "outside" in job["error"], job
    logs = Path(ray._private.worker._global_node.get_session_dir_path()) / "logs"
    deadline = time.monotonic() + 60
    found: list[dict] = []
    while not found and time.monotonic() < deadline:
        for path in logs.glob("worker-*.err"):
            for line in path.read_text(errors="replace").splitlines():
                if job["id"] in line and '"exc"' in line:
                    entry = json.loads(line[line.index("{"):])
                    if entry.get("job_id") == job["id"]:
                        found.append(entry)
        time.sleep(1)
    worker = [e for e in found if e["msg"] in ("tracking pass failed", "chunk 0 failed")]
    assert worker and worker[0]["exc"].startswith("Traceback (most recent call last)"), found
    assert "outside" in worker[0]["exc"] and "check_inside" in worker[0]["exc"]  # where it failed
    assert any(e["msg"].startswith("job failed") and "Traceback" in e["exc"] for e in found)
