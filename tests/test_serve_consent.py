"""A consented face edit through the service, on localhost over real HTTP and WebSocket.

A rights holder (its own key, trusted by the service) enrols two characters of Megamind.avi and
grants `rejuvenate` on one of them for project reel-1, with the `vfx consent` commands. A shot
job and a live stream with `face.rejuvenate` then run through the SERVER's consent gate: only
the granted face changes, and the job's manifest, its signed provenance and the stream's summary
name the grant. The same job for project reel-2 (no grant) is the control.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, timedelta

import cv2
import numpy as np
import pytest
from websockets.sync.client import connect

from serve_helpers import SAMPLES, start_app, stop_app, submit, wait_job
from serving.stream import parse_frame_message
from video_helpers import read_all
from vfx.face.identity import detect_faces
from vfx.video import FrameRange, FrameReader, probe

MEGAMIND = SAMPLES / "Megamind.avi"
FIRST, LAST = 80, 91  # Roxanne (the larger face) and a second, not enrolled character in every frame
REJUVENATE = {"face": {"rejuvenate": 1.0}}


def vfx(home, *args):
    env = {**os.environ, "VFX_HOME": str(home)}
    env.pop("VFX_CONSENT_DB", None)
    done = subprocess.run([sys.executable, "-m", "vfx.cli", *args], capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr
    return done


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    """The service's VFX_HOME holds the consent store and trusts the rights holder's key."""
    home = tmp_path_factory.mktemp("service-home")
    key = home / "holder.key"
    vfx(home, "consent", "keygen", str(key), "--trust")
    vfx(home, "consent", "enroll", "roxanne", "--from", str(MEGAMIND), "--frames", "160-195", "--step", "5", "--key", str(key))
    vfx(home, "consent", "enroll", "hal", "--from", str(MEGAMIND), "--frames", "200-260", "--step", "10", "--key", str(key))
    until = (date.today() + timedelta(days=30)).isoformat()
    vfx(home, "consent", "grant", "roxanne", "--project", "reel-1", "--ops", "rejuvenate", "--until", until, "--key", str(key))
    saved = os.environ.get("VFX_HOME")
    os.environ["VFX_HOME"] = str(home)  # Ray's workers inherit it: the server's consent store and trusted keys
    try:
        app = start_app(tmp_path_factory.mktemp("serve-consent"))
    finally:
        if saved is None:
            os.environ.pop("VFX_HOME")
        else:
            os.environ["VFX_HOME"] = saved
    yield app, home
    stop_app()


def source_frames() -> np.ndarray:
    return np.stack([f for _, f in FrameReader(probe(MEGAMIND), FrameRange(FIRST, LAST)).frames()])


def face_edits(edited: np.ndarray, control: np.ndarray, source: np.ndarray) -> tuple[float, float, float]:
    """(share of the clearly changed pixels inside the granted face's box, changed pixels per frame,
    largest share of changed pixels inside another face's box). The granted character's face is
    the largest in these frames."""
    changed = np.abs(edited.astype(int) - control.astype(int)).max(axis=-1) > 16
    granted = np.zeros_like(changed)
    others = []
    for i, frame in enumerate(source):
        boxes = sorted(detect_faces(frame), key=lambda b: -b[2] * b[3])
        assert len(boxes) == 2, (FIRST + i, boxes)
        for rank, (x, y, w, h) in enumerate(boxes):
            pad = 0.25
            region = (i, slice(int(max(0, y - pad * h)), int(y + (1 + pad) * h)),
                      slice(int(max(0, x - pad * w)), int(x + (1 + pad) * w)))
            if rank == 0:
                granted[region] = True
            else:
                others.append(float(changed[region].mean()))
    return float(changed[granted].sum() / max(1, changed.sum())), float(changed.sum() / len(changed)), max(others)


def run_job(client, tmp_path, project: str) -> tuple[dict, np.ndarray, dict]:
    response = submit(client, {**REJUVENATE, "consent": {"project": project}}, frames=f"{FIRST}-{LAST}", path=MEGAMIND)
    assert response.status_code == 201, response.text
    job = wait_job(client, response.json()["id"], timeout_s=600)
    assert job["state"] == "done", job
    out = tmp_path / f"{project}.mp4"
    out.write_bytes(client.get(f"/v1/jobs/{job['id']}/output").content)
    manifest = client.get(f"/v1/jobs/{job['id']}/manifest").json()
    sidecar = json.loads(client.get(f"/v1/jobs/{job['id']}/provenance").content)["manifest"]
    return manifest, read_all(out)[1], sidecar


def test_a_shot_job_edits_only_the_granted_face_and_names_the_grant(studio, tmp_path):
    app, _ = studio
    with app.client(timeout=120) as client:
        granted, edited, provenance = run_job(client, tmp_path, "reel-1")
        control, untouched, control_provenance = run_job(client, tmp_path, "reel-2")
    assert len(granted["grant_ids"]) == 1 and control["grant_ids"] == []
    assert provenance["grant_ids"] == granted["grant_ids"] and control_provenance["grant_ids"] == []
    (edit,) = provenance["consent"]
    assert edit["subject"] == "roxanne" and edit["operation"] == "rejuvenate"
    assert any("rejuvenate" in step.get("name", "") for step in provenance["steps"])
    share, per_frame, other = face_edits(edited, untouched, source_frames())
    assert per_frame > 200, "the granted face was visibly rejuvenated"
    assert share > 0.9, f"only {share:.0%} of the changed pixels are in the granted face"
    assert other < 0.01, "the other character's face is untouched"


def test_a_stream_edits_only_the_granted_face_through_the_server_gate(studio):
    app, _ = studio
    source = source_frames()
    jpegs = [cv2.imencode(".jpg", cv2.cvtColor(f, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes()
             for f in source]

    def stream(project: str) -> tuple[np.ndarray, dict]:
        with connect(app.ws_url, additional_headers=app.headers("operator"), open_timeout=30, max_size=2**24) as ws:
            ws.send(json.dumps({"config": {**REJUVENATE, "consent": {"project": project}}, "fps": 25}))
            assert json.loads(ws.recv(timeout=120))["type"] == "ready"
            frames = []
            for jpeg in jpegs:  # one at a time: nothing is dropped
                ws.send(jpeg)
                message = ws.recv(timeout=300)
                assert isinstance(message, bytes), message
                frames.append(cv2.cvtColor(cv2.imdecode(np.frombuffer(parse_frame_message(message)[1], np.uint8),
                                                        cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))
            ws.send(json.dumps({"type": "end"}))
            return np.stack(frames), json.loads(ws.recv(timeout=120))

    edited, granted = stream("reel-1")
    untouched, control = stream("reel-2")
    assert granted["processed"] == len(jpegs) and len(granted["grant_ids"]) == 1 and control["grant_ids"] == []
    share, per_frame, other = face_edits(edited, untouched, source)
    assert per_frame > 200 and share > 0.9 and other < 0.01, (share, per_frame, other)
    with connect(app.ws_url, additional_headers=app.headers("operator"), open_timeout=30) as ws:
        ws.send(json.dumps({"config": {**REJUVENATE, "consent": {"project": "reel-1", "db": "sqlite:////tmp/mine.db"}}}))
        with pytest.raises(Exception) as closed:
            ws.recv(timeout=60)
    assert "consent store" in closed.value.rcvd.reason  # a client never names the consent store
