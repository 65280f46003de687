"""Start the real vfx Serve app on localhost for one test module, and talk to it."""
from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from conftest import SAMPLES
from serving.auth import key_digest

REPO = Path(__file__).resolve().parents[1]

ROLES = ("operator", "rights_holder", "admin")


@dataclass
class ServeApp:
    url: str
    keys: dict[str, str]  # role (and "operator2") -> key
    state_dir: Path

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}

    def client(self, who: str | None = "operator", timeout: float = 60.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers(who) if who else {}, timeout=timeout)

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/v1/stream"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_keys(path: Path, signing_key: Path | None = None) -> dict[str, str]:
    keys = {who: f"test-{who}-{os.urandom(8).hex()}" for who in (*ROLES, "operator2")}
    entries = [{"name": who, "role": "operator" if who == "operator2" else who, "sha256": key_digest(key),
                **({"signing_key": str(signing_key)} if signing_key and who == "rights_holder" else {})}
               for who, key in keys.items()]
    path.write_text(yaml.safe_dump({"keys": entries}))
    return keys


def start_app(root: Path, overrides: dict[str, Any] | None = None, deployments: dict[str, Any] | None = None,
              signing_key: Path | None = None) -> ServeApp:
    import ray
    from ray import serve

    from serving.app import run_applications

    state = root / "state"
    state.mkdir(parents=True, exist_ok=True)
    keys = write_keys(root / "keys.yaml", signing_key)
    args = {"state_dir": str(state), "keys_file": str(root / "keys.yaml"), "input_roots": [str(SAMPLES)],
            "jobs": {"chunk_frames": 12, "overlap_frames": 3, "poll_s": 0.5},
            "stream": {"max_batch_size": 8, "batch_wait_timeout_s": 0.01, "queue_frames": 8, "max_inflight": 4},
            **(overrides or {})}
    if deployments:
        args["deployments"] = deployments
    from serving.cluster import ray_environment
    from serving.settings import load_settings

    os.environ.update(ray_environment(load_settings({k: v for k, v in args.items() if k != "deployments"})))  # as `vfx serve`
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, namespace="vfx-tests",
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}})
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    run_applications(args)
    app = ServeApp(url=f"http://127.0.0.1:{port}", keys=keys, state_dir=state)
    wait_healthy(app)
    return app


def stop_app() -> None:
    import ray
    from ray import serve

    serve.shutdown()
    ray.shutdown()


def wait_healthy(app: ServeApp, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(app.url + "/healthz", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError("the app never became healthy")


def submit(client: httpx.Client, config: dict[str, Any], frames: str | None = None, path: Path | None = None,
           upload: Path | None = None, matte: bool = False, key: str | None = None) -> httpx.Response:
    data: dict[str, Any] = {"config": json.dumps(config), "matte": str(matte).lower()}
    if frames:
        data["frames"] = frames
    if path:
        data["path"] = str(path)
    headers = {"Idempotency-Key": key} if key else {}
    if upload:
        with open(upload, "rb") as f:
            return client.post("/v1/jobs", data=data, files={"file": (upload.name, f, "video/x-msvideo")}, headers=headers)
    return client.post("/v1/jobs", data=data, headers=headers)


def wait_job(client: httpx.Client, job_id: str, timeout_s: float = 240, until: tuple[str, ...] = ("done", "failed", "cancelled")) -> dict:
    deadline = time.monotonic() + timeout_s
    job: dict = {}
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in until:
            return job
        time.sleep(0.5)
    raise TimeoutError(f"job {job_id} still {job.get('state')} after {timeout_s} s: {job}")
