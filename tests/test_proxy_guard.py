"""The request guard as Ray's proxy runs it (serving/proxy_guard.py), in front of a real uvicorn server
on localhost: refusals come from the headers alone, and what passes is forwarded exactly as it came.
(The Serve app with the guard in its real proxy: tests/test_serve_hostile.py.)"""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn
import yaml

from serve_helpers import free_port, write_keys
from serving.cluster import ray_environment
from serving.proxy_guard import SETTINGS_ENV, ProxyGuard
from serving.settings import load_settings
from serving.web.session import CSRF_HEADER, SESSION_COOKIE, new_session, seal, session_secret

REPO = Path(__file__).resolve().parents[1]


class Recorder:
    """The app behind the proxy: remembers each request's headers and body size, answers 200."""

    def __init__(self):
        self.seen: list[dict] = []

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        size, more = 0, True
        while more:
            message = await receive()
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
        self.seen.append({"path": scope["path"], "headers": {k.decode(): v.decode() for k, v in scope["headers"]},
                          "bytes": size, "has_app": "app" in scope})
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    root = tmp_path_factory.mktemp("proxy-guard")
    keys = write_keys(root / "keys.yaml")
    settings = load_settings({"state_dir": str(root), "keys_file": str(root / "keys.yaml"),
                              "limits": {"max_bytes": 1_000_000}})
    recorder = Recorder()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(ProxyGuard(recorder, settings), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", keys, recorder, settings
    server.should_exit = True
    thread.join(timeout=10)


def test_unknown_keys_wrong_roles_and_declared_oversize_never_reach_the_app(proxy):
    url, keys, recorder, _ = proxy
    before = len(recorder.seen)
    assert httpx.post(url + "/v1/jobs", content=b"x" * 4096).status_code == 401
    assert httpx.post(url + "/v1/jobs", content=b"x", headers={"X-API-Key": "nope"}).status_code == 401
    wrong_role = httpx.get(url + "/v1/jobs", headers={"X-API-Key": keys["rights_holder"]})
    assert wrong_role.status_code == 403 and "needs operator" in wrong_role.json()["detail"]
    too_big = httpx.post(url + "/v1/consent/grants", content=iter([b" " * (1 << 20)] * 2),
                         headers={"X-API-Key": keys["rights_holder"], "Content-Length": str(2 << 20)})
    assert too_big.status_code == 413
    assert len(recorder.seen) == before


def test_a_valid_key_is_forwarded_untouched(proxy):
    url, keys, recorder, _ = proxy
    answer = httpx.post(url + "/v1/jobs", content=b"y" * 50_000, headers={"X-API-Key": keys["operator"]})
    assert answer.status_code == 200
    seen = recorder.seen[-1]
    assert seen["path"] == "/v1/jobs" and seen["bytes"] == 50_000 and not seen["has_app"]
    assert seen["headers"]["x-api-key"] == keys["operator"]


def test_a_session_cookie_is_checked_and_the_request_goes_on_as_sent(proxy):
    url, keys, recorder, settings = proxy
    session = new_session(keys["operator"])
    cookie = {"Cookie": f"{SESSION_COOKIE}={seal(session_secret(settings.state_path), session)}"}
    before = len(recorder.seen)
    assert httpx.post(url + "/web/api/clips", content=b"z", headers=cookie).status_code == 403  # no CSRF token
    assert httpx.get(url + "/v1/jobs", headers={"Cookie": f"{SESSION_COOKIE}=forged"}).status_code == 401
    assert len(recorder.seen) == before
    assert httpx.post(url + "/web/api/clips", content=b"z", headers={**cookie, CSRF_HEADER: session.csrf}).status_code == 200
    assert "x-api-key" not in recorder.seen[-1]["headers"]  # the app's own SessionAuth turns the cookie into a key


def test_the_kuberay_manifest_runs_the_guard_with_its_own_args_and_answers_at_niceness_0():
    rayservice = next(yaml.safe_load_all((REPO / "configs" / "kuberay-rayservice.yaml").read_text()))
    serve_config = yaml.safe_load(rayservice["spec"]["serveConfigV2"])
    args = next(a for a in serve_config["applications"] if a["name"] == "vfx")["args"]
    wanted = ray_environment(load_settings(args))
    cluster = rayservice["spec"]["rayClusterConfig"]
    pods = [cluster["headGroupSpec"]] + cluster["workerGroupSpecs"]
    for pod in pods:
        for container in pod["template"]["spec"]["containers"]:
            env = {e["name"]: e["value"] for e in container.get("env", [])}
            assert {k: env.get(k) for k in wanted} == wanted, container["name"]
            assert json.loads(env[SETTINGS_ENV])["keys_file"] == args["keys_file"]
