"""`vfx serve` as the README starts it, on this machine: it fits the machine, says its URL when
ready, runs a job to the end over HTTP, and SIGTERM leaves no process of it behind. Each test
starts a real embedded Ray (about 30-60 s here), which is why there are only two."""
from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import psutil
import pytest
import yaml

from serve_helpers import SAMPLES, free_port, submit, wait_job
from vfx.video import probe

REPO = Path(__file__).resolve().parents[1]
READY_TIMEOUT_S = 300


class Served:
    """A `vfx serve` process in its own session, with its own HOME, VFX_HOME and Ray temp dir."""

    def __init__(self, home: Path, *args: str):
        self.marker = uuid.uuid4().hex
        self.ray_tmp = Path(tempfile.mkdtemp(prefix="vr", dir="/tmp"))  # short: Ray's socket paths have a limit
        self.env = {**os.environ, "HOME": str(home), "VFX_HOME": str(home / ".vfx"), "RAY_TMPDIR": str(self.ray_tmp),
                    "PYTHONPATH": str(REPO), "VFX_TEST_MARK": self.marker, "OMP_NUM_THREADS": "1"}
        self.args = args
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []

    def vfx(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "vfx.cli", *args], env=self.env, capture_output=True, text=True,
                              timeout=120, cwd=REPO)

    def start(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "vfx.cli", "serve", *self.args], env=self.env, cwd=REPO,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        start_new_session=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.output.append(line)
            self.lines.put(line)

    def wait_for_line(self, needle: str, timeout_s: float = READY_TIMEOUT_S) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=1)
            except queue.Empty:
                if self.process.poll() is not None:
                    raise AssertionError(f"vfx serve exited {self.process.returncode}:\n{''.join(self.output)}")
                continue
            if needle in line:
                return line
        raise AssertionError(f"no {needle!r} from vfx serve in {timeout_s} s:\n{''.join(self.output)}")

    def leftovers(self) -> list[str]:
        """Processes of the served session, or carrying its environment marker, still alive."""
        found = []
        for process in psutil.process_iter(["pid", "name", "cmdline"]):
            try:
                ours = os.getsid(process.pid) == self.process.pid or \
                    process.environ().get("VFX_TEST_MARK") == self.marker
            except (OSError, psutil.Error):
                continue
            if ours and process.pid != self.process.pid and process.status() != psutil.STATUS_ZOMBIE:
                found.append(f"{process.pid} {process.info['name']} {' '.join(process.info['cmdline'] or [])[:120]}")
        return found

    def niceness(self, title: str) -> set[int]:
        """Niceness of the served session's processes whose command line names ``title`` (a Ray actor)."""
        found = set()
        for process in psutil.process_iter(["pid", "cmdline"]):
            try:
                if os.getsid(process.pid) == self.process.pid and title in " ".join(process.info["cmdline"] or []):
                    found.add(process.nice())
            except (OSError, psutil.Error):
                continue
        return found

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=180)
        finally:
            if self.process.poll() is None:  # the test failed: never leave a Ray behind
                os.killpg(self.process.pid, signal.SIGKILL)

    def assert_nothing_left(self) -> None:
        deadline = time.monotonic() + 20
        while (left := self.leftovers()) and time.monotonic() < deadline:
            time.sleep(1)
        for line in left:  # clean up before failing, so a failure does not leak a Ray
            os.kill(int(line.split()[0]), signal.SIGKILL)
        assert left == [], left


def test_vfx_serve_as_the_readme_says_runs_a_job_and_sigterm_leaves_nothing(tmp_path):
    port = free_port()
    served = Served(tmp_path, "--num-cpus", "2", "--host", "127.0.0.1", "--port", str(port))
    created = served.vfx("serve-key", "pipeline-bot", "--role", "operator")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    served.start()
    try:
        ready = served.wait_for_line("vfx serving on")
        assert f"http://127.0.0.1:{port}" in ready
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"},
                          timeout=60) as client:
            assert client.get("/healthz").json() == {"status": "ok"}
            response = submit(client, {"segment": {"subject": ["person"]}, "restyle": {"style": "night"}},
                              frames="0-11", upload=SAMPLES / "vtest.avi")
            assert response.status_code == 201, response.text
            job = wait_job(client, response.json()["id"], timeout_s=300)
            assert job["state"] == "done", job
            output = tmp_path / "out.mp4"
            output.write_bytes(client.get(f"/v1/jobs/{job['id']}/output").content)
            # answering at Ray's niceness 0, rendering below it (serving/priority.py); the guard in the proxy
            assert served.niceness("ProxyActor") == {0} and served.niceness("ServeReplica:vfx:Gateway") == {0}
            assert served.niceness("ServeReplica:vfx:ChunkWorker") == {19}
            assert httpx.post(f"http://127.0.0.1:{port}/v1/jobs", content=b"x" * 1024).status_code == 401
        assert probe(output).frame_count == 12
    finally:
        code = served.stop()
    assert code == 0, "".join(served.output)
    served.assert_nothing_left()


def test_vfx_serve_refuses_a_deployment_this_machine_cannot_place(tmp_path):
    config = yaml.safe_load((REPO / "configs" / "serve.yaml").read_text())
    for deployment in config["applications"][0]["deployments"]:
        if deployment["name"] == "ChunkWorker":
            deployment["ray_actor_options"]["num_gpus"] = 1
    (tmp_path / "serve.yaml").write_text(yaml.safe_dump(config))
    served = Served(tmp_path, "--config", str(tmp_path / "serve.yaml"), "--num-cpus", "2", "--port", str(free_port()))
    assert served.vfx("serve-key", "bot", "--role", "operator").returncode == 0
    served.start()
    try:
        line = served.wait_for_line("vfx: error:")
        code = served.process.wait(timeout=180)  # it exits by itself, having shut its Ray down
    finally:
        served.stop()
    assert "ChunkWorker" in line and "num_gpus" in line and "Traceback" not in "".join(served.output)
    assert code == 2
    served.assert_nothing_left()


@pytest.mark.parametrize("replicas, cpus", [(2, 2.0), (4, 1.0)])
def test_deployments_are_scaled_to_fit_the_node(replicas, cpus):
    from serving.app import deployment_options
    from serving.sizing import asks, fit_to_node

    options = deployment_options({"ChunkWorker": {"num_replicas": replicas}})
    fitted, factor = fit_to_node(options, {"CPU": cpus}, "serve.yaml")
    assert factor < 1 and asks(fitted)["CPU"] <= cpus
    assert all(o["ray_actor_options"]["num_cpus"] > 0 for o in fitted.values())


def test_healthz_fails_naming_a_deployment_that_cannot_be_scheduled(tmp_path):
    """On a cluster a deployment may wait for a node (a GPU, a custom resource): not ready meanwhile."""
    import ray
    from ray import serve

    from serve_helpers import write_keys
    from serving.app import run_applications

    write_keys(tmp_path / "keys.yaml")
    args = {"state_dir": str(tmp_path / "state"), "keys_file": str(tmp_path / "keys.yaml"),
            "deployments": {"ChunkWorker": {"ray_actor_options": {"num_cpus": 0.1, "resources": {"vfx_absent": 1}}}}}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}})
    try:
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        run_applications(args, wait=False)
        deadline = time.monotonic() + READY_TIMEOUT_S
        answer: dict = {}
        while time.monotonic() < deadline and "waiting" not in answer:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
                answer = response.json() if response.headers.get("content-type") == "application/json" else {}
            except httpx.HTTPError:
                pass
            time.sleep(1)
        assert response.status_code == 503 and answer["status"] == "starting", answer
        assert any(w.startswith("ChunkWorker has no running replica") for w in answer["waiting"]), answer
        assert not any(w.startswith("Gateway") for w in answer["waiting"])
    finally:
        serve.shutdown()
        ray.shutdown()
