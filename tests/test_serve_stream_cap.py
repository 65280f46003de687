"""A live stream's duration cap, on its own app: the cap is a deployment setting, and a short one would
cut the other stream tests' streams."""
from __future__ import annotations

import json
import time

import cv2
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from serve_helpers import SAMPLES, start_app, stop_app
from vfx.video import FrameRange, FrameReader, probe

STREAM_SECONDS = 6


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    served = start_app(tmp_path_factory.mktemp("serve-stream-cap"), overrides={
        "stream": {"max_batch_size": 8, "batch_wait_timeout_s": 0.01, "queue_frames": 8, "max_inflight": 4,
                   "max_stream_seconds": STREAM_SECONDS}})
    yield served
    stop_app()


def test_a_stream_is_ended_at_the_duration_cap_while_it_still_sends(app):
    _, rgb = next(FrameReader(probe(SAMPLES / "vtest.avi"), FrameRange(0, 0)).frames())
    jpeg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()
    summary = None
    with connect(app.ws_url, additional_headers=app.headers("operator"), open_timeout=30, max_size=2**24) as ws:
        ws.send(json.dumps({"subject": "person"}))
        assert json.loads(ws.recv(timeout=60))["type"] == "ready"
        opened = time.monotonic()
        while summary is None and time.monotonic() - opened < STREAM_SECONDS + 60:
            try:
                ws.send(jpeg)
                message = ws.recv(timeout=0.5)
            except TimeoutError:
                continue
            except ConnectionClosed:
                break
            if isinstance(message, str) and json.loads(message)["type"] == "summary":
                summary = json.loads(message)
        lasted = time.monotonic() - opened
    assert summary is not None and summary["ended"] == f"duration limit of {STREAM_SECONDS} s", summary
    assert STREAM_SECONDS - 1 <= lasted <= STREAM_SECONDS + 60
    assert summary["processed"] > 0
